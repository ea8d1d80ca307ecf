"""Status of an operation through its whole life, and the live-worker records."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from queue_system import AsyncQueueManager, QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.ops.reads import POSITION_SCAN_ITEMS
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.waiting import async_wait_until

GATE = threading.Event()
CALLS: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    GATE.clear()
    CALLS.clear()
    yield
    GATE.set()


async def gated(data: dict) -> dict:
    while not GATE.is_set():
        await asyncio.sleep(0.01)
    return {"answer": data["n"] * 2}


def fails_once(data: dict) -> str:
    CALLS[data["k"]] = CALLS.get(data["k"], 0) + 1
    if CALLS[data["k"]] == 1:
        raise ValueError("first run fails")
    return "second run ok"


def always_fails(data: dict) -> None:
    raise KeyError("missing")


def ok(data: dict) -> str:
    return "ok"


def test_unknown_id_is_none(manager: QueueManager) -> None:
    assert manager.get_operation("nope") is None


def test_pending_with_position_counting_higher_tiers(manager: QueueManager) -> None:
    manager.enqueue_batch([{"n": i} for i in range(3)], ok, priority="high")
    normal = [manager.enqueue({"n": i}, ok)["operation_id"] for i in range(4)]
    op = manager.get_operation(normal[2])
    assert op is not None
    assert op["status"] == "pending" and op["position"] == 3 + 2
    assert op["queue_name"] == "ok" and op["priority"] == "normal" and op["attempts"] == 0
    assert op["processor"].endswith(":ok")
    assert op["enqueued_at"].endswith("+00:00") and op["started_at"] is None


def test_position_in_a_long_tier_is_exact_near_either_end_and_a_bound_in_the_middle(
    manager: QueueManager,
) -> None:
    # Read from both ends at most POSITION_SCAN_ITEMS each: never a scan of the whole list.
    deep = 2 * POSITION_SCAN_ITEMS + 1000
    manager.enqueue_batch([{"n": i} for i in range(2)], ok, priority="high")
    ids = [r["operation_id"] for r in manager.enqueue_batch([{"n": i} for i in range(deep)], ok)]
    positions = {
        i: (op["position"], op["position_at_least"])
        for i in (0, POSITION_SCAN_ITEMS - 1, deep // 2, deep - POSITION_SCAN_ITEMS, deep - 1)
        if (op := manager.get_operation(ids[i])) is not None
    }
    assert positions == {
        0: (2, None),  # taken next after the two high items
        POSITION_SCAN_ITEMS - 1: (2 + POSITION_SCAN_ITEMS - 1, None),
        deep // 2: (None, 2 + POSITION_SCAN_ITEMS),  # the middle: a lower bound only
        deep - POSITION_SCAN_ITEMS: (2 + deep - POSITION_SCAN_ITEMS, None),  # found from the head
        deep - 1: (2 + deep - 1, None),
    }
    assert manager.cancel(ids[deep // 2]) == "cancelled"  # a cancel still finds it anywhere


def test_processing_then_completed_with_result(config: QueueConfig, manager: QueueManager) -> None:
    op_id = manager.enqueue({"n": 21}, gated)["operation_id"]

    async def main() -> None:
        worker = QueueWorker(config)
        await worker.start()
        await async_wait_until(lambda: manager.get_operation(op_id)["status"] == "processing")  # type: ignore[index]
        running = manager.get_operation(op_id)
        assert running is not None and running["worker"] == worker.worker_id
        assert running["started_at"] is not None and running["position"] is None
        GATE.set()
        await async_wait_until(lambda: manager.get_operation(op_id)["status"] == "completed")  # type: ignore[index]
        await worker.stop()

    asyncio.run(main())
    done = manager.get_operation(op_id)
    assert done is not None
    assert done["result"] == {"answer": 42} and done["finished_at"] is not None


def test_scheduled_retry_then_completed(make_config: Callable[..., QueueConfig]) -> None:
    clock = FakeClock()
    config = make_config(clock=clock)
    manager = QueueManager(config)
    retry = QueueRetryConfig(max_attempts=2, delays=[30], jitter=0)
    op_id = manager.enqueue({"k": "a"}, fails_once, retry_config=retry)["operation_id"]

    async def main() -> None:
        worker = QueueWorker(config)
        await worker.start()
        await async_wait_until(lambda: manager.get_operation(op_id)["status"] == "scheduled")  # type: ignore[index]
        scheduled = manager.get_operation(op_id)
        assert scheduled is not None and scheduled["attempts"] == 1
        assert scheduled["last_error"]["type"] == "ValueError"
        assert "first run fails" in scheduled["last_error"]["message"]
        assert "Traceback" in scheduled["last_error"]["traceback"]
        assert scheduled["next_run_at"] is not None
        clock.advance(30)
        await async_wait_until(lambda: manager.get_operation(op_id)["status"] == "completed")  # type: ignore[index]
        await worker.stop()

    asyncio.run(main())
    assert manager.get_operation(op_id)["result"] == "second run ok"  # type: ignore[index]


def test_failed_and_error_states(make_config: Callable[..., QueueConfig]) -> None:
    config = make_config(unknown_processor_ttl=0)  # no wait for a deploy: an error at once
    manager = QueueManager(config)
    failed = manager.enqueue({}, always_fails, retry_config=QueueRetryConfig(max_attempts=0))
    error = manager.enqueue({}, "unregistered:thing", queue_name="things")
    run_burst(config)
    f = manager.get_operation(failed["operation_id"])
    e = manager.get_operation(error["operation_id"])
    assert f is not None and f["status"] == "failed" and f["attempts"] == 1
    assert f["last_error"]["type"] == "KeyError" and f["finished_at"] is not None
    assert e is not None and e["status"] == "error"
    assert "not registered" in e["last_error"]["message"]


def test_result_ttl_per_queue(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(result_ttl=500, queue_result_ttls={"ok": 50})
    manager = QueueManager(config)
    short = manager.enqueue({}, ok)["operation_id"]
    long = manager.enqueue({}, ok, queue_name="other")["operation_id"]
    run_burst(config)
    assert 0 < raw_redis.ttl(config.keys.operation(short)) <= 50
    assert 50 < raw_redis.ttl(config.keys.operation(long)) <= 500


def test_async_twin_reads_the_same(config: QueueConfig, manager: QueueManager) -> None:
    op_id = manager.enqueue({}, ok)["operation_id"]

    async def main() -> dict[str, Any] | None:
        aio = AsyncQueueManager(config)
        try:
            return await aio.get_operation(op_id)
        finally:
            await aio.aclose()

    op = asyncio.run(main())
    assert op is not None and op["status"] == "pending" and op["position"] == 0


def test_live_workers_are_listed_and_removed_on_stop(
    config: QueueConfig, manager: QueueManager
) -> None:
    async def main() -> None:
        worker = QueueWorker(config, max_workers=3, queues=["ok"])
        await worker.start()
        await async_wait_until(lambda: len(manager.get_workers()) == 1)
        [record] = manager.get_workers()
        assert record["id"] == worker.worker_id and record["concurrency"] == 3
        assert record["queues"] == ["ok"] and record["running"] == 0
        await worker.stop()

    asyncio.run(main())
    assert manager.get_workers() == []
