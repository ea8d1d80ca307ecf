"""The hook chain, pure: which methods count as hooks, call order, errors reported."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queue_system.core.hooks import HookChain, JobInfo, Middleware, Outcome, previous_notes

JOB = JobInfo(
    operation_id="op-1", queue="q", priority="high", processor="m:f", attempt=1, entity={}
)
DONE = Outcome(status="succeeded", duration_ms=3, wait_ms=1)


class Named(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_process(self, job: JobInfo) -> None:
        self.calls.append(f"{self.name}.before")

    async def after_process(self, job: JobInfo, outcome: Outcome) -> None:
        self.calls.append(f"{self.name}.after")


class Batching:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def after_process_batch(self, pairs: list[tuple[JobInfo, Outcome]]) -> None:
        self.calls.append(f"batch.{len(pairs)}")

    def after_process(self, job: JobInfo, outcome: Outcome) -> None:
        self.calls.append("batch.single")


def errors_into(found: list[tuple[str, str, str | None]]) -> Any:
    def report(hook: str, exc: BaseException, operation_id: str | None) -> None:
        found.append((hook, type(exc).__name__, operation_id))

    return report


def test_before_hooks_run_in_order_after_hooks_in_reverse() -> None:
    calls: list[str] = []
    chain = HookChain([Named("a", calls), Named("b", calls)], errors_into([]))

    async def run() -> None:
        await chain.run("before_process", chain.before_process, JOB, op="op-1")
        await chain.run("after_process", chain.after_process, JOB, DONE, op="op-1")

    asyncio.run(run())
    assert calls == ["a.before", "b.before", "b.after", "a.after"]


def test_inherited_no_ops_are_not_hooks() -> None:
    chain = HookChain([Named("a", [])], errors_into([]))
    assert chain.on_startup == () and chain.on_dead_letter == () and chain.before_enqueue == ()
    assert len(chain.before_process) == 1


def test_plain_objects_and_namespaces_work() -> None:
    seen: list[str] = []

    class Plain:
        def on_dead_letter(self, record: dict[str, Any]) -> None:
            seen.append(record["reason"])

    chain = HookChain([Plain()], errors_into([]))
    chain.run_sync("on_dead_letter", chain.on_dead_letter, {"reason": "failed"}, op=None)
    assert seen == ["failed"]


def test_a_raising_hook_is_reported_and_the_next_still_runs() -> None:
    calls: list[str] = []
    found: list[tuple[str, str, str | None]] = []

    class Broken:
        def before_process(self, job: JobInfo) -> None:
            raise RuntimeError("boom")

    chain = HookChain([Broken(), Named("b", calls)], errors_into(found))
    asyncio.run(chain.run("before_process", chain.before_process, JOB, op="op-1"))
    assert calls == ["b.before"]
    assert found == [("before_process", "RuntimeError", "op-1")]


def test_an_async_hook_in_a_sync_chain_is_reported_never_awaited() -> None:
    found: list[tuple[str, str, str | None]] = []

    class Async:
        async def before_enqueue(self, envelope: dict[str, Any]) -> None:
            raise AssertionError("must not run")

    chain = HookChain([Async()], errors_into(found))
    # The coroutine is closed unstarted: no "never awaited" warning (warnings are errors here).
    chain.run_sync("before_enqueue", chain.before_enqueue, {}, op="op-2")
    assert found == [("before_enqueue", "TypeError", "op-2")]


def test_batch_hooks_get_the_batch_others_each_outcome() -> None:
    calls: list[str] = []
    chain = HookChain([Batching(calls), Named("a", calls)], errors_into([]))
    pairs = [(JOB, DONE), (JOB, DONE)]
    asyncio.run(chain.run_after_batch(pairs))
    assert calls == ["a.after", "a.after", "batch.2"]  # reverse order: a first


def test_job_info_is_read_only() -> None:
    with pytest.raises(AttributeError):
        JOB.attempt = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        DONE.status = "failed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (None, {}),
        ([], {}),
        (["junk"], {}),
        ([{"notes": "x"}], {}),
        ([{"notes": {"a": "1", "b": 2, "c": None}}], {"a": "1"}),
        ([{"notes": {"old": "1"}}, {"notes": {"new": "2"}}], {"new": "2"}),
    ],
)
def test_previous_notes_keep_only_strings_of_the_last_run(history: Any, expected: Any) -> None:
    # Read back from Redis: untrusted, so nothing but string notes reaches the hooks.
    assert dict(previous_notes({"history": history})) == expected
