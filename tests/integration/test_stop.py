"""stop(): no new items, running ones finish within the grace period, the rest go back at once."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from tests.support.waiting import async_wait_until

STARTED: list[int] = []
FINISHED: list[int] = []
GATE = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    STARTED.clear()
    FINISHED.clear()
    GATE.clear()
    yield
    GATE.set()


async def gated(data: dict) -> None:
    STARTED.append(data["n"])
    while not GATE.is_set():
        await asyncio.sleep(0.01)
    FINISHED.append(data["n"])


async def endless(data: dict) -> None:
    STARTED.append(data["n"])
    await asyncio.sleep(3600)


def waiting_ids(raw_redis: redis.Redis, config: QueueConfig, queue: str) -> list[int]:
    # RPOP takes from the right: reversed LRANGE is the order items will be taken in.
    items = raw_redis.lrange(config.keys.queue(queue), 0, -1)
    return [json.loads(i)["entity"]["n"] for i in reversed(items)]


def test_stop_lets_running_items_finish_and_puts_buffered_items_back_first_in_line(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    QueueManager(config).enqueue_batch([{"n": n} for n in range(6)], gated)

    async def main() -> None:
        # Given a worker running 2 items and holding 2 more it claimed ahead
        worker = QueueWorker(config, max_workers=2, prefetch=2)
        await worker.start()
        await async_wait_until(lambda: len(STARTED) == 2 and raw_redis.llen(
            config.keys.queue("gated")) == 2)  # fmt: skip
        # When stop() is called, the buffered items are back before the running ones finish
        stopping = asyncio.create_task(worker.stop(grace_period=10))
        await async_wait_until(lambda: raw_redis.llen(config.keys.queue("gated")) == 4)
        assert waiting_ids(raw_redis, config, "gated") == [2, 3, 4, 5]
        assert not stopping.done()
        GATE.set()
        await stopping

    asyncio.run(main())
    # Then the running items finished and were acked; nothing else ran; nothing is leased
    assert sorted(FINISHED) == [0, 1]
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert config.get_metrics()["succeeded"] == 2


def test_items_running_past_the_grace_period_are_released_at_once(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    QueueManager(config).enqueue_batch([{"n": 1}, {"n": 2}], endless)

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1, prefetch=0)
        await worker.start()
        await async_wait_until(lambda: STARTED == [1])
        await worker.stop(grace_period=0.1)

    asyncio.run(main())
    # Released without waiting for the 30 s lease, at the head of its tier
    assert waiting_ids(raw_redis, config, "endless") == [1, 2]
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert raw_redis.zcard(config.keys.leases) == 0


def test_stop_is_idempotent(config: QueueConfig) -> None:
    async def main() -> Any:
        worker = QueueWorker(config)
        await worker.start()
        await asyncio.gather(worker.stop(), worker.stop())
        await worker.stop()
        return worker.running

    assert asyncio.run(main()) is False


def test_second_stop_with_no_grace_cuts_a_stop_short(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    QueueManager(config).enqueue({"n": 5}, endless)

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1, grace_period=3600)
        await worker.start()
        await async_wait_until(lambda: STARTED == [5])
        first = asyncio.create_task(worker.stop())  # would wait an hour for the running item
        await async_wait_until(lambda: worker._stopping.is_set())
        await asyncio.wait_for(worker.stop(grace_period=0), timeout=10)
        await first

    asyncio.run(main())
    assert waiting_ids(raw_redis, config, "endless") == [5]  # released, not lost
    assert raw_redis.hlen(config.keys.inflight) == 0
