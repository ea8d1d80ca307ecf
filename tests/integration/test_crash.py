"""A worker process killed with SIGKILL mid-job loses nothing: another worker completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from queue_system import QueueManager
from tests.support.burst import run_burst
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from queue_system import QueueConfig, QueueWorker
    from tests.integration.test_crash import hang_forever
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2], lease_timeout=1.0)
    config.register_callback(hang_forever)
    asyncio.run(QueueWorker(config, max_workers=1).run())
    """
)


async def hang_forever(data: dict) -> None:
    """In the child: mark the job started, then never finish."""
    client = redis.Redis.from_url(data["url"])
    client.set(data["started_key"], "1")
    client.close()
    import asyncio

    await asyncio.sleep(3600)


COMPLETED: list[str] = []


def finish_instead(data: dict) -> None:
    COMPLETED.append(data["job"])


@pytest.mark.slow
def test_sigkilled_worker_item_is_completed_by_another_worker(
    redis_url: str, key_prefix: str, make_config: object, raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=1.0)  # type: ignore[operator]
    started_key = f"{key_prefix}started"
    op = QueueManager(config).enqueue(
        {"url": redis_url, "started_key": started_key, "job": "J1"}, hang_forever, queue_name="jobs"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER_CHILD, redis_url, key_prefix],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_until(lambda: raw_redis.exists(started_key), timeout=20, message="child started job")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert raw_redis.hlen(config.keys.inflight) == 1  # still leased to the dead worker
    # Another worker, whose processor for the same name completes, takes the item over
    config.register_callback(finish_instead, name=f"{__name__}:hang_forever")
    run_burst(config)
    assert COMPLETED == ["J1"]
    assert raw_redis.hlen(config.keys.inflight) == 0
    metrics = config.get_metrics()
    assert metrics["succeeded"] == 1 and metrics["enqueued"] == 1
    assert op["status"] == "queued"
