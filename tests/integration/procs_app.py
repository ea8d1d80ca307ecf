"""The application supervised test workers run: ``worker tests.integration.procs_app:config``.

Its QueueConfig reads the server and prefix from ``PROCS_APP_REDIS_URL`` / ``PROCS_APP_PREFIX``
and has a short lease, so the items of a SIGKILLed child come back within seconds. The
processor reports to Redis lists named in each entity (``started_key``, ``done_key``,
``pids_key``), so a test sees what each child process did.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis
import redis.asyncio

from queue_system import QueueConfig

config = QueueConfig(
    redis_url=os.environ.get("PROCS_APP_REDIS_URL"),
    queue_prefix=os.environ.get("PROCS_APP_PREFIX", "queue:"),
    lease_timeout=2.0,
)


async def job(data: dict[str, Any]) -> None:
    """Report the start (with this process's pid), run ``data["seconds"]``, report the end."""
    client = redis.asyncio.Redis.from_url(data["url"])
    try:
        await client.rpush(data["started_key"], data["n"])
        await client.rpush(data["pids_key"], os.getpid())
        await asyncio.sleep(data.get("seconds", 0))
        await client.rpush(data["done_key"], data["n"])
    finally:
        await client.aclose()


config.register_callback(job)


# --- process mode (QueueWorker(executor="process")): sync processors run in child processes


def hang_first_time(data: dict[str, Any]) -> str:
    """Record this process's pid; the first run hangs for ever, later runs return at once."""
    client = redis.Redis.from_url(data["url"])
    try:
        client.rpush(data["pids_key"], os.getpid())
        first = client.incr(data["runs_key"]) == 1
    finally:
        client.close()
    if first:
        time.sleep(3600)  # a sync processor no thread could stop
    return "finished"


def whoami(data: dict[str, Any]) -> dict[str, int]:
    return {"pid": os.getpid(), "n": data["n"]}


def refuse(data: dict[str, Any]) -> None:
    raise ValueError(f"refused {data['n']}")


def burn(data: dict[str, Any]) -> int:
    """Pure-Python arithmetic (holds the GIL)."""
    return sum(i * i % 7 for i in range(data["units"]))
