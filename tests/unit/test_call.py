"""call_with_timeout and ThreadSlots: who cancelled, when the timeout starts, whose thread.

Runs on every supported Python (the 3.10 branch of ``_bounded`` has no ``asyncio.timeout``)::

    PYTHON=/root/.pyenv/versions/3.10.13/bin/python QUEUE_SYSTEM_VENV=.venv310 \\
        ./scripts/test tests/unit/test_call.py
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from queue_system.core.registry import CallableRegistry
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.worker.call import (
    InvalidItem,
    ProcessorCancelledError,
    ThreadSlots,
    call_with_timeout,
    prepare,
)

SHORT_S = 0.1


def in_loop(coro_fn: Any) -> Any:
    """Run ``coro_fn(threads)`` with a fresh ThreadSlots of 1 thread, then shut it down."""

    async def main() -> Any:
        threads = ThreadSlots(1, "test-call")
        try:
            return await coro_fn(threads)
        finally:
            threads.shutdown()

    return asyncio.run(main())


async def awaits_cancelled_future(_: Any) -> None:
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


def test_a_cancelled_error_the_caller_did_not_request_is_the_processors_failure() -> None:
    async def main(threads: ThreadSlots) -> None:
        with pytest.raises(ProcessorCancelledError, match="did not request"):
            await call_with_timeout(awaits_cancelled_future, None, 5.0, threads)

    in_loop(main)


def test_cancelling_the_caller_cancels_the_running_processor() -> None:
    seen: list[str] = []

    async def endless(_: Any) -> None:
        seen.append("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main(threads: ThreadSlots) -> None:
        call = asyncio.create_task(call_with_timeout(endless, None, 60.0, threads))
        while not seen:
            await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(3):  # let a processor running in its own task (3.10) see the cancel
            await asyncio.sleep(0)

    in_loop(main)
    assert seen == ["started", "cancelled"]


def test_async_timeout_and_on_start() -> None:
    started: list[str] = []

    async def slow(_: Any) -> None:
        await asyncio.sleep(30)

    async def main(threads: ThreadSlots) -> None:
        with pytest.raises(TimeoutError, match=r"exceeded its 0.1s timeout"):
            await call_with_timeout(
                slow, None, SHORT_S, threads, on_start=lambda: started.append("x")
            )

    in_loop(main)
    assert started == ["x"]


def test_a_sync_timeout_keeps_the_thread_taken_until_the_function_returns() -> None:
    release = threading.Event()
    ran: list[str] = []

    def hangs(_: Any) -> str:
        release.wait(30)
        return "late"

    def quick(_: Any) -> str:
        ran.append(threading.current_thread().name)
        return "ok"

    async def main(threads: ThreadSlots) -> None:
        # Given the only thread taken by a function that outlives its timeout
        with pytest.raises(TimeoutError):
            await call_with_timeout(hangs, None, SHORT_S, threads)
        assert threads.overdue == 1
        # When another sync call comes, it waits for the thread (its timeout not running)
        waiting = asyncio.create_task(call_with_timeout(quick, None, SHORT_S, threads))
        await asyncio.sleep(3 * SHORT_S)  # longer than its timeout: it must not have failed
        assert not waiting.done() and ran == []
        # Then, once the hung function returns, it runs and succeeds within its own timeout
        release.set()
        assert await waiting == "ok"
        assert threads.overdue == 0

    in_loop(main)
    assert ran and ran[0].startswith("test-call")


def test_on_start_runs_in_the_thread_before_the_function() -> None:
    order: list[tuple[str, str]] = []

    def fn(_: Any) -> None:
        order.append(("fn", threading.current_thread().name))

    def on_start() -> None:
        order.append(("start", threading.current_thread().name))

    async def main(threads: ThreadSlots) -> None:
        await call_with_timeout(fn, None, 5.0, threads, on_start=on_start)

    in_loop(main)
    assert [what for what, _ in order] == ["start", "fn"]
    assert order[0][1] == order[1][1] != threading.main_thread().name


# --- prepare: retry configs are parsed once per distinct config (a drain's hot path) ----------


def _raw_item(registry: CallableRegistry, retry: Any) -> bytes:
    name = registry.register(lambda entity: None, name="noop")
    env = {
        "v": 1,
        "id": "op-1",
        "queue": "jobs",
        "priority": "normal",
        "processor": name,
        "entity": {},
        "retry": retry,
        "attempts": 0,
        "first_at": 1.0,
        "enqueued_at": 1.0,
        "history": [],
    }
    return json.dumps(env).encode()


def test_prepare_reads_each_items_own_retry_config() -> None:
    registry = CallableRegistry()
    three = {"max_attempts": 3, "delays": [1.5, 2], "timeout": None, "jitter": 0}
    five = {**three, "max_attempts": 5, "retry_on": ["ValueError"]}
    runs = [prepare(_raw_item(registry, retry), registry, 10.0) for retry in (three, five, three)]
    assert [run.retry.max_attempts for run in runs] == [3, 5, 3]
    assert runs[0].retry.delays == [1.5, 2.0]
    assert runs[1].retry.retry_on == ("ValueError",)
    assert runs[2].retry == QueueRetryConfig.from_dict(three)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": -3},
        {"max_attempts": True},  # equal to 1, but not an int
        {"max_attempts": 1, "surprise": 1},
    ],
)
def test_prepare_refuses_an_invalid_retry_config_every_time(bad: Any) -> None:
    registry = CallableRegistry()
    good = prepare(_raw_item(registry, {"max_attempts": 1}), registry, 10.0)
    assert good.retry.max_attempts == 1
    for _ in range(2):  # refused every time, not only the first
        with pytest.raises(InvalidItem) as refused:
            prepare(_raw_item(registry, bad), registry, 10.0)
        assert refused.value.reason == "invalid_options"
