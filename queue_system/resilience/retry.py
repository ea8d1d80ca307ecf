"""``retry_with_backoff``: a thin wrapper on tenacity's ``Retrying`` and ``AsyncRetrying``."""

from __future__ import annotations

import functools
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("queue_system.resilience.retry")

DEFAULT_MAX_RETRIES = 3
"""Retries after the first call (so at most 4 calls)."""
DEFAULT_BASE_DELAY_S = 0.1
"""Seconds before the first retry, before jitter; doubles for each later retry."""
DEFAULT_MAX_DELAY_S = 10.0
"""Upper bound in seconds of any single delay, jitter included."""
DEFAULT_TOTAL_TIMEOUT_S = 30.0
"""Seconds from the first call after which no retry starts."""

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def retry_with_backoff(
    max_retries: int = DEFAULT_MAX_RETRIES,
    base_delay: float = DEFAULT_BASE_DELAY_S,
    max_delay: float = DEFAULT_MAX_DELAY_S,
    exceptions: ExceptionTypes | None = None,
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT_S,
    *,
    sleep: Callable[[float], Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry a failing call with exponential backoff and jitter.

    The delay before retry ``n`` (1-based) is
    ``min(max_delay, base_delay * 2 ** (n - 1) + uniform(0, base_delay))``. Retrying stops after
    ``max_retries`` retries, or when the next retry would start more than ``total_timeout``
    seconds after the first call, whichever comes first; the last exception is then re-raised
    as it is (never ``tenacity.RetryError``). Exceptions not in ``exceptions`` are raised at
    once. Each retry is logged at WARNING (logger ``queue_system.resilience.retry``) with the
    attempt number and delay. The deadline is checked between attempts only: bound a call that
    may hang with ``with_timeout``.

    Args:
        max_retries: Retries after the first call; 0 disables retrying.
        base_delay: Seconds before the first retry (before jitter).
        max_delay: Upper bound in seconds of any single delay.
        exceptions: Exception class(es) to retry; ``None`` retries any ``Exception``.
        total_timeout: Seconds from the first call after which no retry starts.
        sleep: Sleep function (tests inject one); default ``time.sleep`` for ``def`` and
            ``asyncio.sleep`` for ``async def`` functions, which may also get a sync one.

    Returns:
        A decorator for ``def`` and ``async def`` functions and methods.

    Raises:
        ValueError: An invalid setting.
        TypeError: Used bare as ``@retry_with_backoff``; write ``@retry_with_backoff()``.
    """
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(
            f"max_retries must be an int, got {max_retries!r}; use @retry_with_backoff()"
        )
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
    if not base_delay >= 0:
        raise ValueError(f"base_delay must be >= 0 seconds, got {base_delay!r}")
    if not max_delay >= base_delay:
        raise ValueError(f"max_delay must be >= base_delay ({base_delay!r}), got {max_delay!r}")
    if not total_timeout > 0:
        raise ValueError(f"total_timeout must be > 0 seconds, got {total_timeout!r}")
    retried = (Exception,) if exceptions is None else exceptions

    settings: dict[str, Any] = {
        "stop": stop_after_attempt(max_retries + 1) | stop_before_delay(total_timeout),
        "wait": _exponential_jitter(base_delay, max_delay),
        "retry": retry_if_exception_type(retried),
        "reraise": True,
    }
    if sleep is not None:
        settings["sleep"] = sleep

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        log_retry = functools.partial(_log_retry, _qualname(func), max_retries)
        options = {**settings, "before_sleep": log_retry}
        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                # A new controller per call: tenacity keeps per-call state on it.
                return await AsyncRetrying(**options)(async_func, *args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return Retrying(**options)(func, *args, **kwargs)

        return wrapper

    return decorate


def _exponential_jitter(base_delay: float, max_delay: float) -> Callable[[RetryCallState], float]:
    # Ours rather than tenacity's wait_exponential_jitter: its first argument is ``initial`` up
    # to 9.1 and ``multiplier`` from 9.2 on, where ``initial`` warns, so no spelling works on
    # every tenacity this package accepts. A plain callable is a wait tenacity has always taken.
    def wait(state: RetryCallState) -> float:
        try:
            delay = base_delay * 2.0 ** (state.attempt_number - 1)
        except OverflowError:  # retry ~1024 onwards: the cap applies long before
            return max_delay
        return min(max_delay, delay + random.uniform(0, base_delay))

    return wait


def _qualname(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", repr(func))


def _log_retry(qualname: str, max_retries: int, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    delay_s = state.upcoming_sleep
    logger.warning(
        "%s failed (attempt %d of at most %d) with %s: %s; retrying in %.3fs",
        qualname,
        state.attempt_number,
        max_retries + 1,
        type(exc).__name__,
        exc,
        delay_s,
        extra={
            "function": qualname,
            "attempt": state.attempt_number,
            "delay_s": delay_s,
            "exception_type": type(exc).__name__,
        },
    )
