"""Middleware hooks on a real server: every outcome, in order; a raising hook loses nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis

from queue_system import AsyncQueueManager, QueueConfig, QueueManager, QueueRetryConfig
from queue_system.core.hooks import JobInfo, Middleware, Outcome
from tests.support.burst import run_burst

RETRY_AT_ONCE = QueueRetryConfig(max_attempts=1, delays=[0.0], jitter=0)
NO_RETRY = QueueRetryConfig(max_attempts=0)
RUNS: dict[str, int] = {}


def succeed(entity: dict[str, Any]) -> str:
    return "ok"


def fail_once(entity: dict[str, Any]) -> str:
    RUNS[entity["key"]] = RUNS.get(entity["key"], 0) + 1
    if RUNS[entity["key"]] == 1:
        raise ConnectionError("first run fails")
    return "ok"


async def always_fail(entity: dict[str, Any]) -> None:
    raise ValueError("bad input")


class Recorder(Middleware):
    """Notes every hook call as (name, operation id, detail)."""

    def __init__(self, name: str, calls: list[tuple[str, ...]]) -> None:
        self.name = name
        self.calls = calls

    def on_startup(self, worker: Any) -> None:
        self.calls.append((self.name, "on_startup", worker.worker_id))

    def on_shutdown(self, worker: Any) -> None:
        self.calls.append((self.name, "on_shutdown", worker.worker_id))

    def before_process(self, job: JobInfo) -> None:
        self.calls.append((self.name, "before", str(job.operation_id), str(job.attempt)))

    def after_process(self, job: JobInfo, outcome: Outcome) -> None:
        detail = outcome.rule or outcome.reason or ""
        self.calls.append((self.name, "after", str(job.operation_id), outcome.status, detail))

    def on_dead_letter(self, record: dict[str, Any]) -> None:
        self.calls.append((self.name, "dead_letter", str(record["operation_id"]), record["reason"]))


class AsyncRecorder(Recorder):
    """The same, with every hook async (awaited by the worker)."""

    async def before_process(self, job: JobInfo) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().before_process(job)

    async def after_process(self, job: JobInfo, outcome: Outcome) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().after_process(job, outcome)

    async def on_dead_letter(self, record: dict[str, Any]) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().on_dead_letter(record)


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()


def enqueue_one_of_each(manager: QueueManager) -> dict[str, str]:
    """Given one item per outcome: succeeded, retried then succeeded, failed, system_error."""
    return {
        "ok": manager.enqueue({}, succeed)["operation_id"],
        "flaky": manager.enqueue({"key": "f"}, fail_once, retry_config=RETRY_AT_ONCE)[
            "operation_id"
        ],
        "bad": manager.enqueue({}, always_fail, retry_config=NO_RETRY)["operation_id"],
        "unknown": manager.enqueue({}, "nowhere:unknown_processor")["operation_id"],
    }


@pytest.mark.parametrize("recorder", [Recorder, AsyncRecorder], ids=["sync", "async"])
def test_hooks_see_every_outcome_in_order(
    make_config: Callable[..., QueueConfig], recorder: type[Recorder]
) -> None:
    calls: list[tuple[str, ...]] = []
    config = make_config(unknown_processor_ttl=0)
    config.add_middleware(recorder("A", calls))
    config.add_middleware(recorder("B", calls))
    ops = enqueue_one_of_each(QueueManager(config))

    worker = run_burst(config, max_workers=1)

    def of(op_id: str) -> list[tuple[str, ...]]:
        return [call for call in calls if call[2] == op_id]

    # before_* in registration order (A, B); after_* in reverse (B, A).
    assert of(ops["ok"]) == [
        ("A", "before", ops["ok"], "1"),
        ("B", "before", ops["ok"], "1"),
        ("B", "after", ops["ok"], "succeeded", ""),
        ("A", "after", ops["ok"], "succeeded", ""),
    ]
    assert [c[1:] for c in of(ops["flaky"]) if c[0] == "A"] == [
        ("before", ops["flaky"], "1"),
        ("after", ops["flaky"], "retried", "retry"),
        ("before", ops["flaky"], "2"),
        ("after", ops["flaky"], "succeeded", ""),
    ]
    assert of(ops["bad"]) == [
        ("A", "before", ops["bad"], "1"),
        ("B", "before", ops["bad"], "1"),
        ("B", "after", ops["bad"], "failed", "max_attempts"),
        ("A", "after", ops["bad"], "failed", "max_attempts"),
        ("B", "dead_letter", ops["bad"], "failed"),
        ("A", "dead_letter", ops["bad"], "failed"),
    ]
    assert of(ops["unknown"]) == [  # never ran: no before_process
        ("B", "after", ops["unknown"], "system_error", "unknown_processor"),
        ("A", "after", ops["unknown"], "system_error", "unknown_processor"),
        ("B", "dead_letter", ops["unknown"], "unknown_processor"),
        ("A", "dead_letter", ops["unknown"], "unknown_processor"),
    ]
    assert calls[:2] == [
        ("A", "on_startup", worker.worker_id),
        ("B", "on_startup", worker.worker_id),
    ]
    assert calls[-2:] == [
        ("B", "on_shutdown", worker.worker_id),
        ("A", "on_shutdown", worker.worker_id),
    ]


def test_after_process_gets_the_exception_and_durations(config: QueueConfig) -> None:
    seen: list[tuple[JobInfo, Outcome]] = []

    class Keep:
        def after_process(self, job: JobInfo, outcome: Outcome) -> None:
            seen.append((job, outcome))

    config.add_middleware(Keep())
    op = QueueManager(config).enqueue({"n": 1}, always_fail, retry_config=NO_RETRY)
    run_burst(config)
    [(job, outcome)] = seen
    assert job.operation_id == op["operation_id"] and job.entity == {"n": 1}
    assert job.queue == "always_fail" and job.priority == "normal" and job.attempt == 1
    assert job.processor is not None and job.processor.endswith(":always_fail")
    assert isinstance(outcome.exception, ValueError) and outcome.duration_ms >= 0
    assert outcome.wait_ms >= 0


class Exploding:
    """Every hook raises (sync or async)."""

    def __init__(self, use_async: bool) -> None:
        self.use_async = use_async

    def _boom(self, *args: Any) -> Any:
        if self.use_async:

            async def later() -> None:
                raise RuntimeError("async hook broke")

            return later()
        raise RuntimeError("hook broke")

    on_startup = on_shutdown = before_process = after_process = on_dead_letter = _boom
    after_process_batch = _boom


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_raising_hooks_lose_nothing(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    use_async: bool,
) -> None:
    calls: list[tuple[str, ...]] = []
    config = make_config(unknown_processor_ttl=0)
    config.add_middleware(Exploding(use_async))
    config.add_middleware(Recorder("after-the-broken-one", calls))
    manager = QueueManager(config)
    ops = enqueue_one_of_each(manager)

    with caplog.at_level(logging.ERROR, logger="queue_system.hooks"):
        run_burst(config, max_workers=1)

    # Every item reached its usual end, the metrics counted it, the other middleware saw it.
    assert manager.get_operation(ops["ok"])["status"] == "completed"  # type: ignore[index]
    assert manager.get_operation(ops["flaky"])["status"] == "completed"  # type: ignore[index]
    assert manager.get_operation(ops["bad"])["status"] == "failed"  # type: ignore[index]
    assert manager.get_operation(ops["unknown"])["status"] == "error"  # type: ignore[index]
    metrics = config.get_metrics()
    assert metrics["succeeded"] == 2 and metrics["failed"] == 1 and metrics["retried"] == 1
    assert metrics["system_errors"] == 1
    assert [c[3] for c in calls if c[1] == "after"].count("succeeded") == 2
    # Each broken hook call was logged with its operation id and counted.
    assert f"for operation {ops['bad']}" in caplog.text
    logged_ops = {getattr(r, "operation_id", None) for r in caplog.records}
    assert {ops["ok"], ops["bad"], ops["unknown"]} <= logged_ops
    hook_errors = sum(
        v for k, v in config.metrics.snapshot().items() if k.startswith("hook_errors")
    )
    # startup + shutdown + 5 before + 6 after (1 batch hook per ack batch, at least 1) + 2 dead
    assert hook_errors >= 2 + 5 + 4 + 2


def test_add_middleware_refuses_objects_without_hooks(config: QueueConfig) -> None:
    with pytest.raises(TypeError, match="before_process"):
        config.add_middleware(object())
    with pytest.raises(TypeError, match="middleware"):
        config.add_middleware(Recorder)  # the class, not an instance


def test_middleware_given_to_the_config(make_config: Callable[..., QueueConfig]) -> None:
    calls: list[tuple[str, ...]] = []
    config = make_config(middleware=[Recorder("A", calls)])
    QueueManager(config).enqueue({}, succeed)
    run_burst(config)
    assert [c[1] for c in calls if c[1] in ("before", "after")] == ["before", "after"]


# --- before_enqueue: producer side, both managers -------------------------------------------


class Tracing:
    """Adds a trace id on enqueue; notes the one each job carries when it runs."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def before_enqueue(self, envelope: dict[str, Any]) -> None:
        envelope["meta"]["trace"] = f"trace-{envelope['id']}"
        envelope["queue"] = "elsewhere"  # read-only: not stored

    def before_process(self, job: JobInfo) -> None:
        self.seen[str(job.operation_id)] = dict(job.meta)


class AsyncTracing(Tracing):
    async def before_enqueue(self, envelope: dict[str, Any]) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().before_enqueue(envelope)


def test_before_enqueue_with_the_sync_manager(config: QueueConfig) -> None:
    tracing = Tracing()
    config.add_middleware(tracing)
    manager = QueueManager(config)
    one = manager.enqueue({}, succeed)["operation_id"]
    batch = [r["operation_id"] for r in manager.enqueue_batch([{}, {}], succeed)]
    run_burst(config)
    assert tracing.seen == {op: {"trace": f"trace-{op}"} for op in [one, *batch]}
    assert manager.get_operation(one)["queue_name"] == "succeed"  # type: ignore[index]


def test_before_enqueue_with_the_async_manager(config: QueueConfig) -> None:
    tracing = AsyncTracing()
    config.add_middleware(tracing)

    async def enqueue() -> list[str]:
        manager = AsyncQueueManager(config)
        try:
            one = await manager.enqueue({}, succeed)
            batch = await manager.enqueue_batch([{}, {}], succeed)
        finally:
            await manager.aclose()
        return [one["operation_id"], *(r["operation_id"] for r in batch)]

    ops = asyncio.run(enqueue())
    run_burst(config)
    assert tracing.seen == {op: {"trace": f"trace-{op}"} for op in ops}


class BadMeta:
    def before_enqueue(self, envelope: dict[str, Any]) -> None:
        envelope["meta"]["when"] = {1, 2}  # not JSON


def test_broken_before_enqueue_hooks_never_fail_an_enqueue(
    config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    tracing = Tracing()
    config.add_middleware(Exploding(use_async=False))
    config.add_middleware(AsyncTracing())  # async: cannot run in QueueManager
    config.add_middleware(BadMeta())
    config.add_middleware(tracing)
    manager = QueueManager(config)
    with caplog.at_level(logging.ERROR, logger="queue_system.hooks"):
        op = manager.enqueue({}, succeed)["operation_id"]
    run_burst(config)
    assert manager.get_operation(op)["status"] == "completed"  # type: ignore[index]
    assert "is async" in caplog.text and "cannot be serialized" in caplog.text
    assert tracing.seen[op] == {"trace": f"trace-{op}"}  # the good hook's meta is kept


def test_on_startup_runs_before_anything_is_claimed(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    waiting: list[int] = []

    class SlowStartup:
        async def on_startup(self, worker: Any) -> None:
            await asyncio.sleep(0.2)  # a fetcher already running would claim meanwhile
            waiting.append(raw_redis.llen(config.get_queue_key("succeed")))

    config.add_middleware(SlowStartup())
    QueueManager(config).enqueue({}, succeed)
    run_burst(config)
    assert waiting == [1]
