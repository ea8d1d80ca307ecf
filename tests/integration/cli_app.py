"""The application CLI-started test workers run: ``worker tests.integration.cli_app:config``.

Its QueueConfig reads the server and prefix from ``CLI_APP_REDIS_URL`` / ``CLI_APP_PREFIX``
(set by the test that starts the worker). The processors report to Redis lists named in each
entity, so a test sees what a worker in another process did.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis

from queue_system import QueueConfig

config = QueueConfig(
    redis_url=os.environ.get("CLI_APP_REDIS_URL"),
    queue_prefix=os.environ.get("CLI_APP_PREFIX", "queue:"),
)


def _push(data: dict[str, Any], key: str) -> None:
    client = redis.Redis.from_url(data["url"])
    try:
        client.rpush(data[key], data["n"])
    finally:
        client.close()


async def slow(data: dict[str, Any]) -> int:
    """Report the start, run ``data["seconds"]``, report the end (cancellable: async)."""
    _push(data, "started_key")
    await asyncio.sleep(data.get("seconds", 0))
    _push(data, "done_key")
    return int(data["n"])


def always_fail(data: dict[str, Any]) -> None:
    raise RuntimeError(f"boom {data.get('n')}")


config.register_callback(slow)
config.register_callback(always_fail)
