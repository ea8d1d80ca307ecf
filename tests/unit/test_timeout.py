"""with_timeout on async and sync callables.

Async scenarios run under ``asyncio.run`` (the suite has no asyncio pytest plugin).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading

import pytest

from tests.support.waiting import wait_until
from utils import with_timeout

SHORT_S = 0.05
"""A deadline the tests let expire on purpose; nothing else waits on real time."""


def test_async_timeout_cancels_the_work_and_raises_timeout_error() -> None:
    seen: list[str] = []

    @with_timeout(default_timeout=SHORT_S)
    async def hangs() -> None:
        seen.append("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    with pytest.raises(TimeoutError, match=r"hangs timed out after 0.05s"):
        asyncio.run(hangs())

    assert seen == ["started", "cancelled"]


def test_async_result_and_own_errors_pass_through() -> None:
    @with_timeout(default_timeout=5.0)
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    @with_timeout(default_timeout=5.0)
    async def raises_own_timeout() -> None:
        raise TimeoutError("from the function")

    assert asyncio.run(add(2, 3)) == 5
    with pytest.raises(TimeoutError, match="from the function"):
        asyncio.run(raises_own_timeout())


def test_sync_caller_gets_timeout_error_while_the_thread_runs_on() -> None:
    release = threading.Event()
    finished = threading.Event()

    @with_timeout(default_timeout=SHORT_S)
    def blocking() -> str:
        release.wait(30)
        finished.set()
        return "done late"

    with pytest.raises(TimeoutError, match=r"blocking timed out after 0.05s"):
        blocking()

    # The caller got its error while the work was still blocked: the thread was not killed.
    assert not finished.is_set()
    assert any(t.name == "with_timeout:" + blocking.__qualname__ for t in threading.enumerate())
    release.set()
    wait_until(finished.is_set, timeout=5, message="background work finishes on its own")


def test_sync_result_errors_and_context_pass_through() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("r-1")

    @with_timeout(default_timeout=5.0)
    def read_context(suffix: str) -> str:
        return request_id.get() + suffix

    @with_timeout(default_timeout=5.0)
    def fails() -> None:
        raise KeyError("boom")

    @with_timeout(default_timeout=5.0)
    def raises_own_timeout() -> None:
        raise TimeoutError("from the function")

    assert read_context("!") == "r-1!"
    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(KeyError, match="boom"):
        fails()
    with pytest.raises(TimeoutError, match="from the function"):
        raises_own_timeout()


def test_wraps_preserves_name_doc_and_signature() -> None:
    def fetch(key: str, *, default: int = 0) -> int:
        """Fetch a value."""
        return default

    async def afetch(key: str, *, default: int = 0) -> int:
        """Fetch a value, async."""
        return default

    wrapped = with_timeout(default_timeout=1.0)(fetch)
    awrapped = with_timeout(default_timeout=1.0)(afetch)

    assert (wrapped.__name__, wrapped.__doc__) == ("fetch", "Fetch a value.")
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert (awrapped.__name__, awrapped.__doc__) == ("afetch", "Fetch a value, async.")
    assert inspect.signature(awrapped) == inspect.signature(afetch)
    assert inspect.iscoroutinefunction(awrapped)
    assert not inspect.iscoroutinefunction(wrapped)


def test_methods_sync_and_async() -> None:
    class Service:
        def __init__(self) -> None:
            self.factor = 3

        @with_timeout(default_timeout=5.0)
        def triple(self, x: int) -> int:
            return self.factor * x

        @with_timeout(default_timeout=5.0)
        async def atriple(self, x: int) -> int:
            return self.factor * x

    service = Service()
    assert service.triple(2) == 6
    assert asyncio.run(service.atriple(4)) == 12


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_rejects_non_positive_timeout(bad: float) -> None:
    with pytest.raises(ValueError, match="default_timeout"):
        with_timeout(default_timeout=bad)


def test_bare_use_is_a_clear_type_error() -> None:
    def f() -> None:
        pass

    with pytest.raises(TypeError, match=r"@with_timeout\(\)"):
        with_timeout(f)  # type: ignore[arg-type]


def test_reference_snippets_run_as_written() -> None:
    @with_timeout(default_timeout=30.0)
    async def critical_operation() -> str:
        return "done"

    @with_timeout(default_timeout=120.0)  # Increase for longer operations
    def longer_operation() -> str:
        return "done"

    assert asyncio.run(critical_operation()) == longer_operation() == "done"
