"""cancel(operation_id) in every state, against a real server (issue 13, part B).

Waiting and scheduled items are removed atomically and never run; running ones are stopped by
their worker (async: cancelled; sync: ``current_job().cancelled``) and end ``cancelled`` via a
fenced script, with ``on_failure`` called with reason ``cancelled``; finished and unknown ids
are a clear no-op answer; a race with completion has exactly one winner.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from typing import Any

import pytest
import redis

from queue_system import (
    AsyncQueueManager,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    QueueWorker,
    current_job,
)
from tests.support.burst import run_burst
from tests.support.waiting import async_wait_until

EVENTS: list[Any] = []
FAILURES: list[dict[str, Any]] = []
SUCCESSES: list[dict[str, Any]] = []
RELEASE = threading.Event()


def record(data: dict) -> str:
    EVENTS.append(("ran", data["n"]))
    return f"done {data['n']}"


def fails_once(data: dict) -> None:
    EVENTS.append(("ran", data["n"]))
    raise RuntimeError("boom")


async def loops_until_cancelled(data: dict) -> str:
    EVENTS.append("started")
    try:
        while True:
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        EVENTS.append("cancelled")
        raise


def sync_watches_the_flag(data: dict) -> str:
    EVENTS.append("started")
    deadline = time.monotonic() + 10
    while not current_job().cancelled and time.monotonic() < deadline:
        time.sleep(0.005)
    EVENTS.append(("saw cancelled", current_job().cancelled))
    return "a result nobody keeps"


async def short_job(data: dict) -> str:
    await asyncio.sleep(data["sleep"])
    EVENTS.append(("finished", data["n"]))
    return "ok"


def on_failure(data: dict) -> None:
    FAILURES.append(data)


def on_success(data: dict) -> None:
    SUCCESSES.append(data)


@pytest.fixture(autouse=True)
def _clean() -> None:
    EVENTS.clear()
    FAILURES.clear()
    SUCCESSES.clear()
    RELEASE.clear()


def _status(manager: QueueManager, op_id: str) -> str | None:
    found = manager.get_operation(op_id)
    return found and found["status"]


# --- waiting / scheduled ---------------------------------------------------------------------


def test_cancel_a_waiting_item_removes_it_and_it_never_runs(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    manager = QueueManager(config)
    ids = [manager.enqueue({"n": n}, record)["operation_id"] for n in range(3)]

    assert manager.cancel(ids[1]) == "cancelled"

    assert raw_redis.llen(config.keys.queue("record")) == 2
    assert _status(manager, ids[1]) == "cancelled"
    run_burst(config)
    assert sorted(EVENTS) == [("ran", 0), ("ran", 2)]
    assert manager.cancel(ids[1]) == "already_finished"
    assert raw_redis.ttl(config.keys.operation(ids[1])) > 0  # a finished record expires


def test_cancel_frees_the_dedup_key(config: QueueConfig) -> None:
    manager = QueueManager(config)
    first = manager.enqueue({"n": 1}, record, deduplication_key="k")
    assert manager.cancel(first["operation_id"]) == "cancelled"

    again = manager.enqueue({"n": 1}, record, deduplication_key="k")

    assert again["status"] == "queued"
    assert again["operation_id"] != first["operation_id"]


def test_cancel_a_scheduled_retry_removes_it_from_the_delayed_set(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    manager = QueueManager(config)
    retry = QueueRetryConfig(max_attempts=3, delays=[60.0], jitter=0)
    op_id = manager.enqueue({"n": 1}, fails_once, retry_config=retry)["operation_id"]
    run_burst(config, wait_scheduled=False)  # the first run fails: a retry due in 60 s
    assert _status(manager, op_id) == "scheduled"

    assert manager.cancel(op_id) == "cancelled"

    assert raw_redis.zcard(config.keys.delayed) == 0
    assert _status(manager, op_id) == "cancelled"
    assert EVENTS == [("ran", 1)]


def test_async_manager_cancels_too(config: QueueConfig) -> None:
    async def main() -> None:
        manager = AsyncQueueManager(config)
        try:
            op_id = (await manager.enqueue({"n": 1}, record))["operation_id"]
            assert await manager.cancel(op_id) == "cancelled"
            assert await manager.cancel(op_id) == "already_finished"
            assert await manager.cancel("no-such-id") == "not_found"
        finally:
            await manager.aclose()

    asyncio.run(main())


def test_cancel_finished_and_unknown_operations_changes_nothing(config: QueueConfig) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, record)["operation_id"]
    run_burst(config)

    assert manager.cancel(op_id) == "already_finished"
    assert manager.cancel("never-enqueued") == "not_found"
    operation = manager.get_operation(op_id)
    assert operation is not None
    assert operation["status"] == "completed"
    assert operation["result"] == "done 1"


# --- running ---------------------------------------------------------------------------------


def _run_until_cancelled(config: QueueConfig, processor: Any) -> tuple[str, str]:
    """Enqueue one item of ``processor``, cancel it once it runs; (cancel answer, op id)."""
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, processor, on_failure=on_failure)["operation_id"]
    answers: list[str] = []

    async def main() -> None:
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        try:
            await async_wait_until(lambda: "started" in EVENTS)
            answers.append(await asyncio.to_thread(manager.cancel, op_id))
            await async_wait_until(lambda: _status(manager, op_id) == "cancelled", timeout=5)
            await async_wait_until(lambda: FAILURES, timeout=5)
        finally:
            await worker.stop()

    asyncio.run(main())
    return answers[0], op_id


def test_cancel_a_running_async_processor_cancels_its_task(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    answer, op_id = _run_until_cancelled(config, loops_until_cancelled)

    assert answer == "cancelling"
    assert EVENTS == ["started", "cancelled"]
    assert [f["reason"] for f in FAILURES] == ["cancelled"]
    assert FAILURES[0]["operation_id"] == op_id
    # Not retried, not dead-lettered, nothing left leased
    assert raw_redis.zcard(config.keys.delayed) == 0
    assert raw_redis.llen(config.keys.failures) == 0
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert raw_redis.llen(config.keys.queue("loops_until_cancelled")) == 0


def test_the_cancel_requested_line_carries_the_operation_id_field(
    config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="queue_system"):
        _, op_id = _run_until_cancelled(config, loops_until_cancelled)

    [line] = [r for r in caplog.records if "cancel requested" in r.getMessage()]
    assert line.operation_id == op_id  # type: ignore[attr-defined]


def test_cancel_a_running_sync_processor_sets_its_flag_and_discards_the_result(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    answer, op_id = _run_until_cancelled(config, sync_watches_the_flag)

    assert answer == "cancelling"
    assert EVENTS == ["started", ("saw cancelled", True)]
    operation = QueueManager(config).get_operation(op_id)
    assert operation is not None
    assert operation["status"] == "cancelled"
    assert operation["result"] is None  # the processor's return value was discarded
    assert [f["reason"] for f in FAILURES] == ["cancelled"]
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_cancel_of_a_running_item_is_idempotent(config: QueueConfig) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, loops_until_cancelled)["operation_id"]

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        try:
            await async_wait_until(lambda: "started" in EVENTS)
            first = await asyncio.to_thread(manager.cancel, op_id)
            second = await asyncio.to_thread(manager.cancel, op_id)
            assert {first, second} <= {"cancelling", "already_finished"}
            await async_wait_until(lambda: _status(manager, op_id) == "cancelled", timeout=5)
        finally:
            await worker.stop()

    asyncio.run(main())
    assert EVENTS == ["started", "cancelled"]


def test_race_with_completion_has_exactly_one_winner(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given many short jobs whose end lands near the moment we cancel them
    manager = QueueManager(config)
    rng = random.Random(13)
    jobs = 60
    ids = [
        manager.enqueue(
            {"n": n, "sleep": rng.uniform(0, 0.02)},
            short_job,
            on_success=on_success,
            on_failure=on_failure,
        )["operation_id"]
        for n in range(jobs)
    ]
    answers: dict[str, str] = {}

    async def main() -> None:
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        try:
            # When each is cancelled, in random order, while the worker drains them: some
            # before they start, some while they run, some after they ended
            for op_id in rng.sample(ids, len(ids)):
                await asyncio.sleep(rng.uniform(0, 0.006))
                answers[op_id] = await asyncio.to_thread(manager.cancel, op_id)

            def all_final() -> bool:
                return all(_status(manager, i) in ("completed", "cancelled", "failed") for i in ids)

            await async_wait_until(all_final, timeout=20)
            ran = [i for i in ids if answers[i] != "cancelled"]  # each gets one callback
            await async_wait_until(lambda: len(SUCCESSES) + len(FAILURES) >= len(ran))
        finally:
            await worker.stop()

    asyncio.run(main())
    # Then each ended exactly once, as its cancel answer said, with exactly one callback
    outcome = {i: _status(manager, i) for i in ids}
    for op_id in ids:
        answer, status = answers[op_id], outcome[op_id]
        if answer in ("cancelled", "cancelling"):
            assert status == "cancelled", (op_id, answer, status)
        else:
            assert (answer, status) == ("already_finished", "completed"), op_id
    succeeded = [d["operation_id"] for d in SUCCESSES]
    failed = [d["operation_id"] for d in FAILURES]
    assert sorted(succeeded + failed) == sorted(  # one callback per item that ran
        i for i in ids if answers[i] != "cancelled"
    )
    assert set(succeeded) == {i for i in ids if outcome[i] == "completed"}
    assert all(d["reason"] == "cancelled" for d in FAILURES)
    assert set(answers.values()) == {"cancelled", "cancelling", "already_finished"}, answers
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert raw_redis.llen(config.keys.queue("short_job")) == 0


# --- a worker that missed the cancel message -------------------------------------------------


def _mark_only(config: QueueConfig, op_id: str) -> None:
    """What cancel.lua leaves when its PUBLISH reached nobody: the durable mark alone."""
    config.redis_client.hset(config.keys.operation(op_id), "cancel_requested", "1.000")


def test_a_missed_message_is_caught_by_the_mark_check(
    config: QueueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from queue_system.worker import job_context

    monkeypatch.setattr(job_context, "MARK_CHECK_S", 0.1)
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, loops_until_cancelled, on_failure=on_failure)["operation_id"]

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        try:
            await async_wait_until(lambda: "started" in EVENTS)
            _mark_only(config, op_id)
            await async_wait_until(lambda: _status(manager, op_id) == "cancelled", timeout=5)
            await async_wait_until(lambda: FAILURES, timeout=5)
        finally:
            await worker.stop()

    asyncio.run(main())
    assert EVENTS == ["started", "cancelled"]
    assert [f["reason"] for f in FAILURES] == ["cancelled"]


def test_a_run_that_completes_after_a_missed_message_ends_cancelled(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given a sync job whose cancel mark is set but whose worker heard nothing
    manager = QueueManager(config)
    op_id = manager.enqueue(
        {"n": 1}, waits_for_release, on_success=on_success, on_failure=on_failure
    )["operation_id"]

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        try:
            await async_wait_until(lambda: "started" in EVENTS)
            _mark_only(config, op_id)
            RELEASE.set()  # When it completes
            await async_wait_until(lambda: FAILURES or SUCCESSES, timeout=5)
        finally:
            await worker.stop()

    asyncio.run(main())
    # Then the ack finds the mark: cancelled, result discarded, on_failure (not on_success)
    operation = manager.get_operation(op_id)
    assert operation is not None
    assert (operation["status"], operation["result"]) == ("cancelled", None)
    assert [f["reason"] for f in FAILURES] == ["cancelled"]
    assert SUCCESSES == []
    assert raw_redis.hlen(config.keys.inflight) == 0


def waits_for_release(data: dict) -> str:
    EVENTS.append("started")
    RELEASE.wait(10)
    return "finished anyway"
