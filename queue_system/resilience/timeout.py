"""``with_timeout``: a deadline for sync and async callables."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar, cast

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT_S = 60.0
"""Seconds a decorated call may run before the caller gets ``TimeoutError``."""


def with_timeout(
    default_timeout: float = DEFAULT_TIMEOUT_S,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Raise ``TimeoutError`` in the caller when a call runs longer than ``default_timeout``.

    ``async def`` functions: the awaited work is cancelled (it sees ``asyncio.CancelledError``)
    and the caller gets ``TimeoutError``.

    ``def`` functions run in a new daemon thread (with a copy of the caller's ``contextvars``),
    and the caller gets ``TimeoutError`` at the deadline. **Python cannot kill a thread**: the
    timed-out work keeps running in the background until it returns on its own, its result or
    error is discarded, and it is abandoned if the interpreter exits first. Give blocking I/O its
    own timeout (socket, Redis ``socket_timeout``) so such threads do not pile up.

    A ``TimeoutError`` raised by the function itself passes through unchanged.

    Args:
        default_timeout: Deadline in seconds for each call; must be > 0.

    Returns:
        A decorator that keeps the wrapped function's name, docstring and signature.

    Raises:
        ValueError: ``default_timeout`` is not a positive number.

    Example:
        >>> @with_timeout(default_timeout=30.0)
        ... async def critical_operation() -> None: ...
    """
    if isinstance(default_timeout, bool) or not isinstance(default_timeout, int | float):
        raise TypeError(
            f"default_timeout must be a number of seconds, got {default_timeout!r}; "
            "use @with_timeout() with parentheses"
        )
    if not default_timeout > 0:
        raise ValueError(f"default_timeout must be > 0 seconds, got {default_timeout!r}")
    timeout_s = float(default_timeout)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):
            return cast(Callable[P, R], _async_wrapper(func, timeout_s))
        return _sync_wrapper(func, timeout_s)

    return decorate


def _timeout_message(func: Callable[..., object], timeout_s: float) -> str:
    return f"{_qualname(func)} timed out after {timeout_s:g}s"


def _qualname(func: Callable[..., object]) -> str:
    return getattr(func, "__qualname__", repr(func))


def _async_wrapper(func: Callable[P, Awaitable[R]], timeout_s: float) -> Callable[P, Awaitable[R]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if sys.version_info >= (3, 11):
            deadline = asyncio.timeout(timeout_s)
            try:
                async with deadline:
                    return await func(*args, **kwargs)
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # the function's own TimeoutError
                raise TimeoutError(_timeout_message(func, timeout_s)) from exc
        else:  # pragma: no cover - Python 3.10, where asyncio.TimeoutError is its own class
            try:
                return await asyncio.wait_for(func(*args, **kwargs), timeout_s)
            except asyncio.TimeoutError as exc:
                raise TimeoutError(_timeout_message(func, timeout_s)) from exc

    return wrapper


def _sync_wrapper(func: Callable[P, R], timeout_s: float) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        outcome: Future[R] = Future()
        context = contextvars.copy_context()

        def run() -> None:
            try:
                outcome.set_result(context.run(func, *args, **kwargs))
            except BaseException as exc:  # handed to the caller, or dropped after a timeout
                outcome.set_exception(exc)

        # A fresh daemon thread per call rather than a pool: timed-out calls that never return
        # would otherwise occupy the pool's workers and starve later calls.
        worker = threading.Thread(target=run, name=f"with_timeout:{_qualname(func)}", daemon=True)
        worker.start()
        # Waiting on the thread (not Future.result(timeout)) keeps a TimeoutError raised by the
        # function itself distinct from our deadline.
        worker.join(timeout_s)
        if worker.is_alive():
            raise TimeoutError(_timeout_message(func, timeout_s))
        return outcome.result()

    return wrapper
