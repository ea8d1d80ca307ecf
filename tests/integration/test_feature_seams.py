"""Where this wave's features meet: cancel x delayed enqueue, wait_for x expiry, hooks x the
``expired`` and ``cancelled`` outcomes. Each feature was built alone; these cases only exist
once they live together."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from queue_system import (
    OperationExpired,
    QueueConfig,
    QueueManager,
    QueueWorker,
    current_job,
)
from queue_system.core.hooks import JobInfo, Outcome
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.waiting import async_wait_until, wait_until

RAN: list[int] = []
STARTED = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()
    STARTED.clear()


def record(data: dict[str, Any]) -> None:
    RAN.append(data["n"])


def waits_for_its_cancel(data: dict[str, Any]) -> None:
    STARTED.set()
    job = current_job()
    wait_until(lambda: job.cancelled, timeout=10, message="cancel seen")


class Seen:
    """A middleware that records every outcome it hears of."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str]] = []

    def after_process(self, job: JobInfo, outcome: Outcome) -> None:
        self.outcomes.append((job.operation_id, outcome.status))


def test_cancel_a_delayed_enqueue_removes_it_and_its_scheduled_count(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given two items enqueued with delay= (they wait in the scheduled set, counted per list)
    manager = QueueManager(config)
    kept = manager.enqueue({"n": 1}, record, delay=0.2)["operation_id"]
    gone = manager.enqueue({"n": 2}, record, delay=0.2, deduplication_key="two")["operation_id"]
    list_key = config.keys.queue("record")
    assert int(raw_redis.hget(config.keys.scheduled_counts, list_key) or 0) == 2

    # When one is cancelled before it is due
    assert manager.cancel(gone) == "cancelled"

    # Then it left the scheduled set and its count, freed its dedup key, and never runs
    assert raw_redis.zcard(config.keys.scheduled) == 1
    assert config.get_metrics()["cancelled"] == 1
    assert int(raw_redis.hget(config.keys.scheduled_counts, list_key) or 0) == 1
    assert manager.enqueue({"n": 2}, record, deduplication_key="two")["status"] == "queued"
    run_burst(config, wait_scheduled=True)
    assert sorted(RAN) == [1, 2]  # the kept delayed one, and the new enqueue of n=2
    info = manager.get_operation(gone)
    assert info is not None and info["status"] == "cancelled"
    assert manager.get_operation(kept)["status"] == "completed"  # type: ignore[index]


def test_wait_for_an_item_that_expires_raises_operation_expired_at_once(
    make_config: Callable[..., QueueConfig],
) -> None:
    # Given an item that expires 10 s after its enqueue, and a caller waiting for it
    clock = FakeClock()
    config = make_config(clock=clock)
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, record, expires=10)["operation_id"]
    out: dict[str, Any] = {}

    def wait() -> None:
        try:
            manager.wait_for(op_id, timeout=20)
        except OperationExpired as exc:
            out["error"] = exc

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    key = config.keys.operation(op_id)
    wait_until(lambda: int(config.redis_client.hget(key, "waiters") or 0) == 1, message="waits")

    # When a worker claims it after its deadline
    clock.advance(11)
    run_burst(config)

    # Then the waiter is woken by the expiry (not by its 20 s timeout)
    waiter.join(5)
    assert not waiter.is_alive(), "wait_for still blocked after the item expired"
    assert isinstance(out.get("error"), OperationExpired)
    assert RAN == []


def test_hooks_hear_expired_and_cancelled_outcomes(make_config: Callable[..., QueueConfig]) -> None:
    clock = FakeClock()
    seen = Seen()
    config = make_config(clock=clock, middleware=[seen])
    manager = QueueManager(config)
    expiring = manager.enqueue({"n": 1}, record, expires=5)["operation_id"]
    clock.advance(6)
    run_burst(config)
    running = manager.enqueue({"n": 2}, waits_for_its_cancel)["operation_id"]

    async def main() -> None:
        worker = QueueWorker(config)
        await worker.start()
        try:
            await async_wait_until(STARTED.is_set, message="sync processor started")
            assert manager.cancel(running) == "cancelling"
            await async_wait_until(lambda: (running, "cancelled") in seen.outcomes)
        finally:
            await worker.stop(grace_period=0.1)

    asyncio.run(main())
    assert (expiring, "expired") in seen.outcomes
    assert [status for op, status in seen.outcomes if op == running] == ["cancelled"]
