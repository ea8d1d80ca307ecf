"""wait_for(operation_id, timeout): blocks on Redis, returns the result or raises a typed error.

Real server; the worker runs in the same process. Latency is measured against the record's
own ``finished_at`` (written by the ack script), so "within 50 ms of completion" is measured
from the moment the operation really ended.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from queue_system import (
    AsyncQueueManager,
    OperationCancelled,
    OperationFailed,
    OperationNotFound,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    QueueWorker,
    WaitTimeout,
)
from tests.support.burst import run_burst
from tests.support.waiting import async_wait_until

GATE = threading.Event()
STARTED = threading.Event()


def gated(data: dict) -> dict:
    STARTED.set()
    GATE.wait(10)
    return {"doubled": data["n"] * 2}


def broken(data: dict) -> None:
    raise ValueError("bad input")


async def forever(data: dict) -> None:
    STARTED.set()
    await asyncio.sleep(60)


@pytest.fixture(autouse=True)
def _reset() -> None:
    GATE.clear()
    STARTED.clear()


def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` in a thread; the dict gets "value" or "error" and "returned_at" (epoch s)."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            out["error"] = exc
        out["returned_at"] = time.time()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _with_worker(config: QueueConfig, body: Any, **worker_kwargs: Any) -> None:
    async def main() -> None:
        worker = QueueWorker(config, **worker_kwargs)
        await worker.start()
        try:
            await body()
        finally:
            await worker.stop(grace_period=0.1)

    asyncio.run(main())


def test_wait_for_returns_the_result_within_50_ms_of_completion(config: QueueConfig) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 21}, gated)["operation_id"]
    thread, out = _in_thread(manager.wait_for, op_id, timeout=10)

    async def body() -> None:
        await async_wait_until(STARTED.is_set)
        await async_wait_until(lambda: _waiters(config, op_id) == 1)  # it blocks in Redis
        GATE.set()
        await async_wait_until(lambda: "returned_at" in out, timeout=5)

    _with_worker(config, body)
    thread.join(5)
    assert out.get("value") == {"doubled": 42}, out
    operation = manager.get_operation(op_id)
    assert operation is not None
    finished_at = _epoch(operation["finished_at"])
    latency = out["returned_at"] - finished_at
    assert latency < 0.05, f"wait_for returned {latency * 1000:.1f} ms after completion"


def _waiters(config: QueueConfig, op_id: str) -> int:
    value = config.redis_client.hget(config.keys.operation(op_id), "waiters")
    return int(value or 0)


def _epoch(iso: str | None) -> float:
    from datetime import datetime

    assert iso is not None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_wait_for_a_finished_operation_returns_at_once(config: QueueConfig) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 2}, gated)["operation_id"]
    GATE.set()
    run_burst(config)

    assert manager.wait_for(op_id, timeout=0) == {"doubled": 4}


def test_wait_for_a_failed_operation_raises_operation_failed(config: QueueConfig) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, broken, retry_config=QueueRetryConfig(max_attempts=0))[
        "operation_id"
    ]
    thread, out = _in_thread(manager.wait_for, op_id, timeout=10)
    run_burst(config)
    thread.join(10)

    error = out.get("error")
    assert isinstance(error, OperationFailed), out
    assert error.operation["status"] == "failed"
    assert error.operation["last_error"]["type"] == "ValueError"


def test_wait_for_a_cancelled_operation_raises_operation_cancelled(config: QueueConfig) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, forever)["operation_id"]
    thread, out = _in_thread(manager.wait_for, op_id, timeout=10)

    async def body() -> None:
        await async_wait_until(STARTED.is_set)
        assert await asyncio.to_thread(manager.cancel, op_id) == "cancelling"
        await async_wait_until(lambda: "returned_at" in out, timeout=5)

    _with_worker(config, body)
    thread.join(5)
    assert isinstance(out.get("error"), OperationCancelled), out
    assert out["error"].operation["status"] == "cancelled"


def test_wait_for_times_out_with_wait_timeout_and_uncounts_itself(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, gated)["operation_id"]
    started = time.monotonic()

    with pytest.raises(WaitTimeout) as caught:
        manager.wait_for(op_id, timeout=0.2)

    assert 0.2 <= time.monotonic() - started < 2
    assert caught.value.operation["status"] == "pending"
    assert _waiters(config, op_id) == 0  # a later finish writes nothing for it


def test_wait_for_an_unknown_operation_raises_not_found(config: QueueConfig) -> None:
    with pytest.raises(OperationNotFound):
        QueueManager(config).wait_for("no-such-operation", timeout=1)


def test_async_wait_for_returns_the_result(config: QueueConfig) -> None:
    async def main() -> None:
        manager = AsyncQueueManager(config)
        worker = QueueWorker(config)
        await worker.start()
        try:
            op_id = (await manager.enqueue({"n": 5}, gated))["operation_id"]
            waiting = asyncio.ensure_future(manager.wait_for(op_id, timeout=10))
            await async_wait_until(STARTED.is_set)
            assert not waiting.done()
            GATE.set()
            assert await waiting == {"doubled": 10}
            with pytest.raises(OperationNotFound):
                await manager.wait_for("unknown", timeout=1)
        finally:
            await worker.stop()
            await manager.aclose()

    asyncio.run(main())


def test_nobody_waiting_writes_no_done_list(config: QueueConfig, raw_redis: redis.Redis) -> None:
    # The ack path costs nothing extra while nobody waits: no done LIST, no waiter count
    manager = QueueManager(config)
    ids = [manager.enqueue({"n": n}, gated)["operation_id"] for n in range(20)]
    GATE.set()
    run_burst(config)

    assert all((manager.get_operation(i) or {})["status"] == "completed" for i in ids)
    assert list(raw_redis.scan_iter(match=f"{config.keys.prefix}done:*")) == []


def test_outcomes_are_not_logged_as_failures_but_bad_arguments_are(
    config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, gated)["operation_id"]
    caplog.set_level(logging.DEBUG, logger="queue_system.producer")

    with pytest.raises(WaitTimeout):
        manager.wait_for(op_id, timeout=0)
    with pytest.raises(OperationNotFound):
        manager.wait_for("unknown", timeout=0)
    assert [r for r in caplog.records if r.name.startswith("queue_system.producer")] == []

    with pytest.raises(ValueError, match="timeout"):
        manager.wait_for(op_id, timeout=-1)
    [warning] = [r for r in caplog.records if r.name.startswith("queue_system.producer")]
    assert warning.levelname == "WARNING" and warning.operation_id == op_id
    assert warning.function == "QueueManager.wait_for"
