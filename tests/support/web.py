"""Starlette's TestClient, imported without the warning Starlette >= 1.0 gives when it finds
httpx rather than httpx2 (httpx still works; the [web] extra does not need either)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    warnings.filterwarnings("ignore", message="The anyio.abc.BlockingPortal alias is deprecated")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]
