"""The only way a test waits: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.01


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, message: str = "") -> None:
    """Return as soon as ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or predicate}")
        time.sleep(POLL_S)


async def async_wait_until(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float = 10.0,
    message: str = "",
) -> None:
    """Async twin of :func:`wait_until`; the predicate may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or predicate}")
        await asyncio.sleep(POLL_S)
