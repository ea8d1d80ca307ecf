"""RedisGuard: producer-side Redis calls under a circuit breaker, retried on dropped connections.

* A dropped connection (``redis.ConnectionError``) is retried with backoff (tenacity, through
  ``utils.retry_with_backoff``) up to ``max_connection_retries`` times, so at most
  ``1 + max_connection_retries`` calls, and no retry starts later than ``connection_timeout``
  after the first failure. A retry re-sends the very same call (the same keys and arguments,
  built once): each script the producers send recognises its own earlier run (enqueue by the
  nonce of its plan), so a re-send after a lost reply writes nothing twice.
* Timeouts (``redis.TimeoutError``) are never retried here: a frozen server would multiply the
  wait. Below the guard, the client's own ``Retry`` (``engine/connection.py``) decides whether
  one reconnect-and-resend happens inside a single call.
* Failures open the breaker (``utils.circuit_breaker``'s pybreaker adapter), after which calls
  fail at once with :class:`QueueUnavailableError` instead of waiting on a dead server; after
  ``REDIS_RECOVERY_S`` one trial call goes through, and a success closes it again.
* Breakers are named after the server (``redis 127.0.0.1:6379/0``), so every manager of one
  process that talks to the same server shares one breaker.

The hot path costs one lock-free look at the breaker while it is quiet (closed, no failure
counted): its admission and bookkeeping run only once a call fails, and the retry machinery
only after a dropped connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis

from queue_system.errors import QueueUnavailableError
from queue_system.resilience import CircuitBreakerOpenError, breakers, retry_with_backoff
from queue_system.resilience.breaker import BreakerSettings, CircuitBreaker

R = TypeVar("R")

REDIS_FAILURE_THRESHOLD = 3  # failed calls (within the window) that open the breaker
REDIS_RECOVERY_S = 5.0  # seconds an open breaker fails calls at once before one trial call
REDIS_WINDOW_S = 30.0  # failures older than this do not count
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


class RedisGuard:
    """Runs Redis calls for one server under its breaker, with connection retries."""

    def __init__(self, server: str, max_connection_retries: int, connection_timeout: float):
        self.breaker: CircuitBreaker = breakers.get_or_create(
            f"redis {server}",
            BreakerSettings(
                failure_threshold=REDIS_FAILURE_THRESHOLD,
                recovery_timeout=REDIS_RECOVERY_S,
                half_open_max_calls=1,
                window_size=REDIS_WINDOW_S,
                exceptions=TRANSIENT,
            ),
        )
        self._retry = retry_with_backoff(
            max_retries=max_connection_retries,
            base_delay=0.05,
            max_delay=0.5,
            exceptions=(redis.ConnectionError,),
            total_timeout=connection_timeout,
        )

    def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` guarded; QueueUnavailableError when Redis cannot answer."""
        if self.breaker.is_quiet():
            # Hot path: a success would change nothing in a quiet breaker, so the first try
            # skips its admission (two lock round trips). A failure still goes through it.
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                first = exc
            try:
                replayed: R = self.breaker.call(self._after_failure, first, fn, *args, **kwargs)
                return replayed
            except CircuitBreakerOpenError:
                raise first from None  # opened meanwhile: as if admitted before, report ours
        try:
            result: R = self.breaker.call(self._retried, fn, *args, **kwargs)
            return result
        except CircuitBreakerOpenError as exc:
            raise QueueUnavailableError(f"queue unavailable: {exc}") from exc

    async def call_async(self, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        """The asyncio twin of :meth:`call`."""
        if self.breaker.is_quiet():
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                first = exc
            try:
                replayed: R = await self.breaker.call_asyncio(
                    self._after_failure_async, first, fn, *args, **kwargs
                )
                return replayed
            except CircuitBreakerOpenError:
                raise first from None  # opened meanwhile: as if admitted before, report ours
        try:
            result: R = await self.breaker.call_asyncio(self._retried_async, fn, *args, **kwargs)
            return result
        except CircuitBreakerOpenError as exc:
            raise QueueUnavailableError(f"queue unavailable: {exc}") from exc

    def _after_failure(self, exc: Exception, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """The failure of a hot-path first try, replayed under the breaker (so it counts as
        the breaker's own call would count it), then retried as :meth:`_retried` does."""
        if isinstance(exc, redis.ConnectionError):
            return self._retry_after(exc, fn, *args, **kwargs)
        raise exc

    async def _after_failure_async(
        self, exc: Exception, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any
    ) -> R:
        if isinstance(exc, redis.ConnectionError):
            return await self._retry_after_async(exc, fn, *args, **kwargs)
        raise exc

    def _retried(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        try:
            return fn(*args, **kwargs)
        except redis.ConnectionError as exc:
            return self._retry_after(exc, fn, *args, **kwargs)

    def _retry_after(
        self, exc: redis.ConnectionError, fn: Callable[..., R], *args: Any, **kwargs: Any
    ) -> R:
        failed: list[BaseException] = [exc]

        def attempt() -> R:
            # tenacity's first attempt is the call that just failed: it counts against
            # max_connection_retries and is followed by the first backoff.
            if failed:
                raise failed.pop()
            return fn(*args, **kwargs)

        return self._retry(attempt)()

    async def _retried_async(self, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        try:
            return await fn(*args, **kwargs)
        except redis.ConnectionError as exc:
            return await self._retry_after_async(exc, fn, *args, **kwargs)

    async def _retry_after_async(
        self, exc: redis.ConnectionError, fn: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any
    ) -> R:
        failed: list[BaseException] = [exc]

        async def attempt() -> R:
            if failed:
                raise failed.pop()
            return await fn(*args, **kwargs)

        return await self._retry(attempt)()
