"""An error reply from one of our scripts is a bug, not an outage: the worker logs it at
ERROR with the script's name, counts ``script_errors``, backs off (never spins) and goes on
once the cause is gone."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import script_source
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until

RAN: list[int] = []


async def record(data: dict) -> None:
    RAN.append(data["n"])


def sha(script: str) -> bytes:
    return hashlib.sha1(script_source(script).encode()).hexdigest().encode()


def test_script_error_replies_are_logged_counted_and_backed_off(
    make_config: Callable[..., QueueConfig],
    redis_server: EmbeddedRedis,
    raw_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    RAN.clear()
    with FaultProxy(redis_server.port) as proxy:
        config = make_config(redis_url=proxy.url)
        config.register_callback(record)
        # Given a corrupt key: the claim script's first RPOP gets a WRONGTYPE error, every time
        raw_redis.set(config.keys.queue("jobs", "high"), "not a list")
        QueueManager(make_config()).enqueue({"n": 1}, record, queue_name="jobs")

        async def main() -> None:
            worker = QueueWorker(config)
            await worker.start()
            try:
                # Then the error is reported as a script error, counted
                await async_wait_until(lambda: config.metrics.snapshot().get("script_errors"))
                # and retried on a backoff, not in a tight loop
                before, started = proxy.requests_matching(sha("claim")), time.monotonic()
                await asyncio.sleep(2.0)  # a window in which to count the retries
                per_second = (proxy.requests_matching(sha("claim")) - before) / (
                    time.monotonic() - started
                )
                assert per_second < 5, f"{per_second:.1f} claims/s: the worker spins"
                # When the cause is repaired, the worker goes on and runs the item
                raw_redis.delete(config.keys.queue("jobs", "high"))
                await async_wait_until(lambda: RAN == [1], timeout=40)
                assert worker.running
            finally:
                await worker.stop()

        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "script" in r.getMessage()]
    assert errors and "claim" in errors[0].getMessage()
    assert "WRONGTYPE" in errors[0].getMessage()
