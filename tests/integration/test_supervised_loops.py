"""The worker's background loops survive any error, and a loop that cannot go on stops the
worker loudly instead of leaving a zombie that heartbeats (finding 5 of issue 10)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import script_source
from queue_system.errors import QueueSystemError
from queue_system.worker.store import WorkerBroker
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until

ROOT = Path(__file__).resolve().parents[2]
RAN: list[int] = []


async def record(data: dict) -> None:
    RAN.append(data["n"])


def sha(script: str) -> bytes:
    return hashlib.sha1(script_source(script).encode()).hexdigest().encode()


def test_worker_started_while_redis_is_down_runs_items_once_redis_is_up(
    make_config: Callable[..., QueueConfig], caplog: pytest.LogCaptureFixture
) -> None:
    RAN.clear()
    server = EmbeddedRedis()  # its port is chosen; nothing listens there yet
    config = make_config(redis_url=server.url, connection_timeout=0.5)

    async def main() -> None:
        # Given a worker started while Redis is down
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        try:
            await async_wait_until(lambda: "Redis unavailable" in caplog.text)
            # When Redis comes up and an item is enqueued
            await asyncio.to_thread(server.start)
            await asyncio.to_thread(QueueManager(config).enqueue, {"n": 1}, record)
            # Then the worker runs it
            await async_wait_until(lambda: RAN == [1], timeout=15)
        finally:
            await worker.stop(grace_period=1)

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_an_invalid_member_of_the_queue_registry_does_not_stop_the_fetcher(
    config: QueueConfig, raw_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    RAN.clear()
    raw_redis.sadd(config.keys.registry, "not a valid:name!")
    QueueManager(config).enqueue({"n": 2}, record, queue_name="jobs")

    async def main() -> None:
        worker = QueueWorker(config)
        await worker.start()
        try:
            await async_wait_until(lambda: RAN == [2], timeout=10)
        finally:
            await worker.stop()

    asyncio.run(main())
    assert "not a valid:name!" in caplog.text  # the bad member is named, once skipped


def test_an_error_in_burst_maintenance_does_not_hang_the_burst(
    make_config: Callable[..., QueueConfig],
    redis_server: EmbeddedRedis,
    raw_redis: redis.Redis,
) -> None:
    RAN.clear()
    with FaultProxy(redis_server.port) as proxy:
        config = make_config(redis_url=proxy.url)
        QueueManager(config).enqueue({"n": 3}, record)
        # Given a corrupt delayed set: every promote_due call is an error reply
        raw_redis.set(config.keys.delayed, "not a zset")

        async def main() -> None:
            worker = QueueWorker(config, burst=True)
            run = asyncio.create_task(worker.run())
            # When the burst worker ran the item and its maintenance failed (twice: the
            # first error reply has certainly been sent back)...
            await async_wait_until(
                lambda: RAN == [3] and proxy.requests_matching(sha("promote_due")) >= 3, timeout=10
            )
            # ... and the corruption is then repaired
            raw_redis.delete(config.keys.delayed)
            # Then the burst still ends
            await asyncio.wait_for(run, timeout=15)

        asyncio.run(main())


def test_a_loop_that_cannot_resume_stops_the_worker_loudly(
    config: QueueConfig, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bug: every heartbeat raises a non-Redis error, whatever the retries
    async def broken_heartbeat(self: WorkerBroker, record: Any, ttl_s: float) -> None:
        raise RuntimeError("a bug in the heartbeat")

    monkeypatch.setattr(WorkerBroker, "heartbeat", broken_heartbeat)

    async def main() -> QueueWorker:
        worker = QueueWorker(config)
        # When it runs, run() raises instead of running on without a heartbeat
        with pytest.raises(QueueSystemError, match="heartbeat"):
            await asyncio.wait_for(worker.run(), timeout=15)
        return worker

    worker = asyncio.run(main())
    # Then it stopped: not running, and its record is gone from the workers set
    assert not worker.running
    assert raw_redis.zcard(config.keys.workers) == 0


def test_the_cli_worker_exits_1_when_a_loop_cannot_resume(redis_url: str, key_prefix: str) -> None:
    env = {
        **os.environ,
        "CLI_APP_REDIS_URL": redis_url,
        "CLI_APP_PREFIX": key_prefix,
        "PYTHONPATH": str(ROOT),
    }
    argv = [
        sys.executable,
        "-m",
        "queue_system",
        "--url",
        redis_url,
        "--prefix",
        key_prefix,
        "worker",
        "tests.integration.broken_heartbeat_app:config",
    ]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: WorkerLoopError: the heartbeat loop failed"), last
