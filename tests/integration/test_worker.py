"""Worker contract: outcomes, callbacks, retries, timeouts, strict priority."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.waiting import async_wait_until

EVENTS: list[Any] = []
ATTEMPTS: dict[str, int] = {}
RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    EVENTS.clear()
    ATTEMPTS.clear()
    RELEASE.clear()
    yield
    RELEASE.set()


async def record(data: dict) -> dict:
    EVENTS.append(("run", data["n"]))
    return {"doubled": data["n"] * 2}


def record_sync(data: dict) -> dict:
    EVENTS.append(("sync", data["n"], threading.current_thread().name))
    return {"n": data["n"]}


async def on_success(data: dict) -> None:
    EVENTS.append(("success", data["operation_id"], data["result"]))


def on_failure(data: dict) -> None:
    EVENTS.append(("failure", data["operation_id"], data["error"], data["attempts"]))


def flaky(data: dict) -> str:
    """Fails the first ``data['fail']`` times it runs for an operation."""
    key = data["key"]
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] <= data["fail"]:
        raise ConnectionError(f"attempt {ATTEMPTS[key]} failed")
    return "ok"


async def slow_async(data: dict) -> None:
    await asyncio.sleep(data["seconds"])


def slow_sync(data: dict) -> None:
    RELEASE.wait(data["seconds"])


def failures(raw_redis: redis.Redis, config: QueueConfig) -> list[dict]:
    return [json.loads(r) for r in raw_redis.lrange(config.keys.failures, 0, -1)]


def test_success_runs_processor_and_on_success_once_with_the_result(
    config: QueueConfig, manager: QueueManager
) -> None:
    result = manager.enqueue({"n": 21}, record, on_success=on_success)
    run_burst(config)
    assert [("run", 21), ("success", result["operation_id"], {"doubled": 42})] == EVENTS
    assert manager.get_queue_status()[config.keys.inflight] == 0


def test_sync_processors_run_in_the_thread_pool(config: QueueConfig, manager: QueueManager) -> None:
    manager.enqueue({"n": 1}, record_sync)
    run_burst(config)
    assert [("sync", 1, EVENTS[0][2])] == EVENTS
    assert EVENTS[0][2].startswith("queue-worker")


def test_callbacks_by_registered_name(config: QueueConfig, manager: QueueManager) -> None:
    config.register_callback(on_success, name="notify_success")
    op = manager.enqueue({"n": 2}, record, on_success="notify_success")
    run_burst(config)
    assert ("success", op["operation_id"], {"doubled": 4}) in EVENTS


def test_strict_priority_then_fifo_under_interleaved_enqueues(
    config: QueueConfig, manager: QueueManager
) -> None:
    order = ["low", "normal", "high", "low", "high", "normal", "normal", "low", "high"]
    for n, priority in enumerate(order):
        manager.enqueue({"n": n}, record, priority=priority)
    run_burst(config, max_workers=1)
    ran = [n for kind, n in EVENTS]
    expected = [n for p in ("high", "normal", "low") for n, q in enumerate(order) if q == p]
    assert ran == expected


def test_retry_then_success(config: QueueConfig, manager: QueueManager) -> None:
    retry = QueueRetryConfig(max_attempts=3, delays=[0.05], jitter=0)
    manager.enqueue({"key": "a", "fail": 2}, flaky, retry_config=retry, on_failure=on_failure)
    run_burst(config)
    assert ATTEMPTS["a"] == 3
    assert not [e for e in EVENTS if e[0] == "failure"]
    metrics = config.get_metrics()
    assert metrics["retried"] == 2 and metrics["succeeded"] == 1


def test_exhausted_retries_go_to_failures_with_history_and_on_failure_once(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    retry = QueueRetryConfig(max_attempts=2, delays=[0.01], jitter=0)
    op = manager.enqueue({"key": "b", "fail": 99}, flaky, retry_config=retry,
                         on_failure=on_failure)  # fmt: skip
    run_burst(config)
    assert ATTEMPTS["b"] == 3  # the first run and two retries
    [record_] = failures(raw_redis, config)
    assert record_["operation_id"] == op["operation_id"]
    assert record_["reason"] == "failed" and record_["error_type"] == "ConnectionError"
    assert record_["attempts"] == 3
    assert [h["message"] for h in record_["history"]] == [f"attempt {i} failed" for i in (1, 2, 3)]
    assert all("Traceback" in h["traceback"] and h["at"] > 0 for h in record_["history"])
    assert record_["envelope"]["entity"] == {"key": "b", "fail": 99}
    assert [e for e in EVENTS if e[0] == "failure"] == [
        ("failure", op["operation_id"], "attempt 3 failed", 3)
    ]


def test_retry_delays_and_deadline_follow_the_injected_clock(
    make_config: Any, raw_redis: redis.Redis
) -> None:
    # Given a clock the test moves, and a schedule of 60 s then 600 s with a 300 s deadline
    clock = FakeClock()
    config = make_config(clock=clock)
    retry = QueueRetryConfig(max_attempts=5, delays=[60, 600], timeout=300, jitter=0)
    QueueManager(config).enqueue({"key": "c", "fail": 99}, flaky, retry_config=retry)

    async def main() -> None:
        worker = QueueWorker(config)
        await worker.start()
        try:
            # When the first run fails, the retry is scheduled exactly 60 s later
            await async_wait_until(lambda: raw_redis.zcard(config.keys.delayed) == 1)
            [(_, due_ms)] = raw_redis.zrange(config.keys.delayed, 0, -1, withscores=True)
            assert due_ms == (clock.now + 60) * 1000
            assert ATTEMPTS["c"] == 1
            # Then it does not run until the clock reaches its due time
            clock.advance(59)
            await asyncio.sleep(0)  # the maintainer keeps running; nothing is due yet
            assert raw_redis.zcard(config.keys.delayed) == 1
            clock.advance(1)
            await async_wait_until(lambda: ATTEMPTS["c"] == 2)
            # And the next retry (600 s) would pass the 300 s deadline: failures at once
            await async_wait_until(lambda: raw_redis.llen(config.keys.failures) == 1)
            assert raw_redis.zcard(config.keys.delayed) == 0
        finally:
            await worker.stop()

    asyncio.run(main())
    assert failures(raw_redis, config)[0]["attempts"] == 2


def test_async_timeout_is_enforced_and_recorded(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    manager.enqueue({"seconds": 30}, slow_async, timeout=0.2,
                    retry_config=QueueRetryConfig(max_attempts=0))  # fmt: skip
    started = time.monotonic()
    run_burst(config)
    assert time.monotonic() - started < 10
    [record_] = failures(raw_redis, config)
    assert record_["error_type"] == "TimeoutError"
    assert "0.2s timeout" in record_["message"]


def test_sync_timeout_uses_work_timeout_by_default(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    manager.enqueue({"seconds": 30}, slow_sync, retry_config=QueueRetryConfig(max_attempts=0))
    run_burst(config, work_timeout=0.2)
    RELEASE.set()  # let the abandoned thread end
    assert failures(raw_redis, config)[0]["error_type"] == "TimeoutError"


def test_callback_failure_does_not_change_the_outcome(
    config: QueueConfig, manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    manager.enqueue({"key": "d", "fail": 0}, flaky, on_success=flaky)  # on_success raises
    run_burst(config)
    assert config.get_metrics()["succeeded"] == 1
    assert "callback" in caplog.text and "failed" in caplog.text


def test_worker_validates_its_arguments(config: QueueConfig) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        QueueWorker(config, max_workers=0)
    with pytest.raises(ValueError, match="work_timeout"):
        QueueWorker(config, work_timeout=0)
    with pytest.raises(TypeError, match="queues"):
        QueueWorker(config, queues="emails")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue_name"):
        QueueWorker(config, queues=["a:b"])


def test_worker_serves_only_its_queues(config: QueueConfig, manager: QueueManager) -> None:
    manager.enqueue({"n": 1}, record, queue_name="mine")
    manager.enqueue({"n": 2}, record, queue_name="other")
    run_burst(config, queues=["mine"])
    assert EVENTS == [("run", 1)]
    assert manager.get_queue_status()[config.keys.queue("other")] == 1


def test_running_property(config: QueueConfig) -> None:
    async def main() -> None:
        worker = QueueWorker(config)
        assert not worker.running
        await worker.start()
        assert worker.running
        await worker.stop()
        assert not worker.running

    asyncio.run(main())


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_prefetch_must_be_a_count(config: QueueConfig, bad: object) -> None:
    with pytest.raises(ValueError, match="prefetch"):
        QueueWorker(config, prefetch=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("prefetch", "expected"), [(0, "lhll"), (None, "llhl")])
def test_prefetch_decides_whether_a_new_high_item_waits_behind_claimed_low_ones(
    config: QueueConfig, manager: QueueManager, prefetch: int | None, expected: str
) -> None:
    # Given one executor and four low items; the first run enqueues a high item
    order: list[str] = []

    def record(entity: dict[str, Any]) -> None:
        order.append(entity["p"])
        if len(order) == 1:
            manager.enqueue({"p": "h"}, name, queue_name="strict", priority="high")

    name = config.register_callback(record, name="record_order")
    for _ in range(3):
        manager.enqueue({"p": "l"}, name, queue_name="strict", priority="low")
    # When a one-executor worker drains it
    run_burst(config, max_workers=1, prefetch=prefetch)
    # Then with prefetch=0 the high item runs next; by default it waits behind the low item
    # the worker had already claimed ahead (the README's prefetch note)
    assert "".join(order) == expected
