"""Limits hold across worker PROCESSES, and a SIGKILLed worker's slots free with its leases."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from queue_system import QueueConfig, QueueLimits, QueueManager, QueueWorker
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

# argv: url, prefix, lease_timeout, burst ("1"/"0")
WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from queue_system import QueueConfig, QueueLimits, QueueWorker
    from tests.integration import test_limits_fleet as app
    config = QueueConfig(
        redis_url=sys.argv[1],
        queue_prefix=sys.argv[2],
        lease_timeout=float(sys.argv[3]),
        limits={"capped": QueueLimits(max_concurrency=3)},
    )
    config.register_callback(app.nap)
    config.register_callback(app.hang_forever)
    asyncio.run(QueueWorker(config, max_workers=4, burst=sys.argv[4] == "1").run())
    """
)


async def nap(data: dict) -> None:
    """In a child: a slow job that counts itself done in Redis."""
    await asyncio.sleep(0.1)
    client = redis.Redis.from_url(data["url"])
    client.incr(data["done_key"])
    client.close()


async def hang_forever(data: dict) -> None:
    """In a child: count the start in Redis, then never finish."""
    client = redis.Redis.from_url(data["url"])
    client.incr(data["started_key"])
    client.close()
    await asyncio.sleep(3600)


@pytest.fixture
def children(redis_url: str, key_prefix: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: worker processes of this test's namespace, killed (by pid) at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(lease_timeout: float = 30.0, burst: bool = True) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER_CHILD,
                redis_url,
                key_prefix,
                str(lease_timeout),
                "1" if burst else "0",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        started.append(child)
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


def in_flight_of(raw_redis: redis.Redis, config: QueueConfig, queue: str) -> int:
    """Items of ``queue`` leased right now, across the fleet (from the inflight hash)."""
    list_key = config.get_queue_key(queue).encode()
    return sum(1 for v in raw_redis.hvals(config.keys.inflight) if v.startswith(list_key + b"\n"))


@pytest.mark.slow
def test_four_worker_processes_never_exceed_max_concurrency(
    redis_url: str,
    key_prefix: str,
    config: QueueConfig,
    raw_redis: redis.Redis,
    children: Callable[..., subprocess.Popen[bytes]],
) -> None:
    # Given 40 slow items of a queue capped at 3, and four worker processes of 4 executors
    done_key = f"{key_prefix}test:done"
    manager = QueueManager(config)
    for n in range(40):
        manager.enqueue(
            {"url": redis_url, "done_key": done_key, "n": n},
            f"{__name__}:nap",
            queue_name="capped",
        )
    fleet = [children() for _ in range(4)]
    # When they drain it, sampled from Redis all along
    samples: list[int] = []

    def drained() -> bool:
        samples.append(in_flight_of(raw_redis, config, "capped"))
        return int(raw_redis.get(done_key) or 0) == 40

    wait_until(drained, timeout=60, message="the fleet drained 40 capped items")
    for child in fleet:
        assert child.wait(timeout=30) == 0
    # Then the fleet never held more than 3 at once, and did use its 3 slots
    assert max(samples) == 3, samples
    assert len(samples) > 10


@pytest.mark.slow
def test_a_sigkilled_workers_slots_free_within_its_lease(
    redis_url: str,
    key_prefix: str,
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    children: Callable[..., subprocess.Popen[bytes]],
) -> None:
    lease_s = 1.0
    config = make_config(lease_timeout=lease_s, limits={"capped": QueueLimits(max_concurrency=3)})
    started_key = f"{key_prefix}test:started"
    manager = QueueManager(config)
    for n in range(6):
        manager.enqueue(
            {"url": redis_url, "started_key": started_key, "n": n},
            f"{__name__}:hang_forever",
            queue_name="capped",
        )
    # Given a worker process holding the queue's 3 slots (its jobs hang)
    child = children(lease_timeout=lease_s, burst=False)
    wait_until(lambda: int(raw_redis.get(started_key) or 0) == 3, timeout=30, message="3 hang")
    assert in_flight_of(raw_redis, config, "capped") == 3
    # When it is SIGKILLed
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    killed = time.monotonic()
    # Then another worker starts the waiting items once the dead worker's leases end (no
    # recovery pass, no ack needed), and later finishes the recovered ones too
    finished: list[tuple[int, float]] = []

    def finish_instead(data: dict) -> None:
        finished.append((data["n"], time.monotonic() - killed))

    config.register_callback(finish_instead, name=f"{__name__}:hang_forever")

    async def main() -> None:
        await asyncio.wait_for(QueueWorker(config, max_workers=4, burst=True).run(), 30)

    asyncio.run(main())
    assert sorted(n for n, _ in finished) == list(range(6))
    first = min(at for _, at in finished)
    assert first < lease_s + 0.6, finished  # within the lease (renewed every third of it)
    assert raw_redis.hlen(config.keys.inflight) == 0
