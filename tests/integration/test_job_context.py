"""current_job() in async and sync processors, and progress stored on the operation's record."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from queue_system import (
    NoJobContextError,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    QueueWorker,
    current_job,
)
from queue_system.cli.main import cli
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.waiting import async_wait_until

SEEN: list[dict[str, Any]] = []
GATE = threading.Event()


def _snapshot() -> dict[str, Any]:
    job = current_job()
    return {
        "operation_id": job.operation_id,
        "attempt": job.attempt,
        "queue": job.queue,
        "priority": job.priority,
        "enqueued_at": job.enqueued_at,
        "deadline": job.deadline,
        "cancelled": job.cancelled,
        "thread": threading.current_thread().name,
    }


async def async_reads_context(data: dict) -> None:
    SEEN.append(_snapshot())


def sync_reads_context(data: dict) -> None:
    SEEN.append(_snapshot())


def fails_first(data: dict) -> None:
    SEEN.append(_snapshot())
    if current_job().attempt == 1:
        raise RuntimeError("first run fails")


async def async_reports_progress(data: dict) -> None:
    current_job().update_progress({"done": 3, "of": 10})
    await asyncio.to_thread(GATE.wait, 10)


def sync_reports_progress(data: dict) -> None:
    current_job().update_progress(42)
    GATE.wait(10)


@pytest.fixture(autouse=True)
def _reset() -> None:
    SEEN.clear()
    GATE.clear()


@pytest.mark.parametrize("processor", [async_reads_context, sync_reads_context])
def test_current_job_describes_the_running_item(config: QueueConfig, processor: Any) -> None:
    manager = QueueManager(config)
    before = config.clock.time()
    op_id = manager.enqueue({"n": 1}, processor, priority="high", timeout=7)["operation_id"]
    run_burst(config)

    [seen] = SEEN
    assert seen["operation_id"] == op_id
    assert seen["attempt"] == 1
    assert seen["queue"] == processor.__name__
    assert seen["priority"] == "high"
    assert before <= seen["enqueued_at"] <= config.clock.time()
    assert seen["enqueued_at"] + 7 <= seen["deadline"] <= config.clock.time() + 7
    assert seen["cancelled"] is False
    if processor is sync_reads_context:
        assert seen["thread"].startswith("queue-worker")  # the pool thread saw it too


def test_attempt_counts_retries(config: QueueConfig) -> None:
    retry = QueueRetryConfig(max_attempts=2, delays=[0.01], jitter=0)
    QueueManager(config).enqueue({"n": 1}, fails_first, retry_config=retry)
    run_burst(config)

    assert [s["attempt"] for s in SEEN] == [1, 2]


def test_current_job_outside_a_processor_raises() -> None:
    with pytest.raises(NoJobContextError, match="only available inside a processor"):
        current_job()


def test_the_context_does_not_leak_to_the_next_item_or_the_caller(config: QueueConfig) -> None:
    manager = QueueManager(config)
    ids = [manager.enqueue({"n": n}, async_reads_context)["operation_id"] for n in range(3)]
    run_burst(config, max_workers=1)

    assert [s["operation_id"] for s in SEEN] == ids
    with pytest.raises(NoJobContextError):
        current_job()


@pytest.mark.parametrize(
    ("processor", "expected"),
    [(async_reports_progress, {"done": 3, "of": 10}), (sync_reports_progress, 42)],
)
def test_progress_is_visible_while_the_item_runs(
    config: QueueConfig, processor: Any, expected: Any
) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, processor)["operation_id"]
    shown: list[str] = []

    def progress() -> Any:
        return (manager.get_operation(op_id) or {}).get("progress")

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        try:
            await async_wait_until(lambda: progress() == expected, timeout=5)
            assert (manager.get_operation(op_id) or {})["status"] == "processing"
            # The CLI shows it too
            result = cli_runner().invoke(
                cli,
                ["--url", config.redis_url, "--prefix", config.keys.prefix, "job", op_id, "--json"],
            )
            shown.append(result.stdout)
            GATE.set()
            await async_wait_until(
                lambda: (manager.get_operation(op_id) or {})["status"] == "completed"
            )
        finally:
            await worker.stop()

    asyncio.run(main())
    assert json.loads(shown[0])["progress"] == expected


def test_progress_must_be_small_json() -> None:
    from queue_system.core.job_context import MAX_PROGRESS_BYTES, JobContext

    envelope = {"id": "x", "attempts": 0, "queue": "q", "priority": "normal", "enqueued_at": 0}
    job = JobContext(envelope, deadline=1.0)
    assert (job.operation_id, job.attempt, job.queue, job.priority) == ("x", 1, "q", "normal")
    job.update_progress({"ok": 1})  # no sink: accepted, written nowhere
    with pytest.raises(ValueError, match="JSON"):
        job.update_progress(object())
    with pytest.raises(ValueError, match="bytes"):
        job.update_progress("x" * MAX_PROGRESS_BYTES)


def test_monitor_and_admin_show_running_operations_with_progress(config: QueueConfig) -> None:
    from queue_system import QueueAdmin

    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, sync_reports_progress)["operation_id"]
    frames: list[str] = []

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        try:
            admin = QueueAdmin(config)
            await async_wait_until(
                lambda: [r["progress"] for r in admin.running_operations()] == [42], timeout=5
            )
            assert admin.cancel(op_id) == "cancelling"
            [running] = admin.running_operations()
            assert running["operation_id"] == op_id
            assert running["cancel_requested_at"] is not None
            result = cli_runner().invoke(
                cli,
                [
                    *("--url", config.redis_url, "--prefix", config.keys.prefix),
                    *("monitor", "--snapshot", "--wide"),
                ],
            )
            frames.append(result.stdout)
            GATE.set()
        finally:
            await worker.stop()

    asyncio.run(main())
    assert op_id in frames[0] and "requested" in frames[0], frames[0]
    assert QueueAdmin(config).running_operations() == []
