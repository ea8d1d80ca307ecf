"""Sync processors and the worker's threads (finding 10 of issue 10).

A sync processor cannot be interrupted: past its timeout it runs on in its thread. That
thread stays busy until the function really returns; a later sync item waits for a free
thread (its timeout starts when it starts) instead of "timing out" without ever running;
and callbacks have threads of their own.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from tests.support.waiting import async_wait_until

NO_RETRY = QueueRetryConfig(max_attempts=0)
RAN: list[Any] = []
RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    RAN.clear()
    RELEASE.clear()
    yield
    RELEASE.set()  # never leave a test's thread behind


def hangs(data: dict) -> None:
    """Runs past its timeout: returns after ``seconds`` (or when the test releases it)."""
    RAN.append(("hang", data["n"]))
    RELEASE.wait(data["seconds"])


def quick(data: dict) -> str:
    RAN.append(("quick", data["n"]))
    return "ok"


def on_failure(data: dict) -> None:
    RAN.append(("on_failure", data["operation_id"]))


def failures(raw_redis: redis.Redis, config: QueueConfig) -> list[dict[str, Any]]:
    return [json.loads(r) for r in raw_redis.lrange(config.keys.failures, 0, -1)]


def test_later_sync_items_wait_for_a_thread_instead_of_timing_out_unstarted(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    manager = QueueManager(config)
    # Given two threads, both taken by processors that run 1.5 s past a 0.3 s timeout
    manager.enqueue_batch(
        [{"n": 1, "seconds": 1.5}, {"n": 2, "seconds": 1.5}],
        hangs,
        timeout=0.3,
        retry_config=NO_RETRY,
    )
    # And then two quick sync items with a 0.5 s timeout
    quick_ops = manager.enqueue_batch(
        [{"n": 3}, {"n": 4}], quick, timeout=0.5, retry_config=NO_RETRY
    )

    async def main() -> None:
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        try:
            await async_wait_until(
                lambda: len(failures(raw_redis, config)) + config.get_metrics()["succeeded"] == 4,
                timeout=15,
            )
        finally:
            await worker.stop()

    asyncio.run(main())
    # Then the hung ones timed out, and the quick ones ran once a thread was free
    failed = {f["operation_id"]: f for f in failures(raw_redis, config)}
    assert not {op["operation_id"] for op in quick_ops} & set(failed), [
        f["message"] for f in failed.values()
    ]
    assert {("quick", 3), ("quick", 4)} <= set(RAN)
    assert all(f["error_type"] == "TimeoutError" for f in failed.values())


def test_sync_callbacks_run_while_every_processor_thread_hangs(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given one thread, hung by a processor that timed out (it returns only when released)
    op = QueueManager(config).enqueue(
        {"n": 5, "seconds": 30}, hangs, timeout=0.2, retry_config=NO_RETRY, on_failure=on_failure
    )

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        try:
            # Then its sync on_failure callback still runs, on a thread of its own
            await async_wait_until(lambda: ("on_failure", op["operation_id"]) in RAN, timeout=5)
        finally:
            RELEASE.set()
            await worker.stop()

    asyncio.run(main())
    assert failures(raw_redis, config)[0]["error_type"] == "TimeoutError"


def test_a_timed_out_thread_counts_as_running_until_it_returns(config: QueueConfig) -> None:
    QueueManager(config).enqueue({"n": 6, "seconds": 30}, hangs, timeout=0.2, retry_config=NO_RETRY)

    async def main() -> None:
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        try:
            # When the item is finished (in failures, and no longer held by the worker)
            await async_wait_until(lambda: config.get_metrics()["failed"] == 1 and not worker._held)
            # Then its thread, still running, still counts: the worker says so
            assert worker.heartbeat_record()["running"] == 1
            RELEASE.set()
            await async_wait_until(lambda: worker.heartbeat_record()["running"] == 0)
        finally:
            await worker.stop()

    asyncio.run(main())
