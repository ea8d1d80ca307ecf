"""The dashboard (needs the ``[web]`` extra): ``create_app(config)`` gives a Starlette app."""

from __future__ import annotations

from queue_system.web.app import create_app

__all__ = ["create_app"]
