"""``circuit_breaker``: a thin adapter on pybreaker with an asyncio path and a named registry.

pybreaker supplies the state objects and transitions (``open``, ``half_open``, ``close``), the
exclusion rules, the listeners and the memory storage. Added: storages whose failure count
forgets failures older than ``window_size`` (in memory, or in Redis shared by processes:
:mod:`.breaker_storage`); a limit on concurrent half-open trials; one admit/finish core that
does not hold a lock while the guarded function runs, under a sync and an asyncio shell
(pybreaker's ``call_async`` needs Tornado); ``CircuitBreakerOpenError``; state-change
logging; the ``breakers`` registry.
Only pybreaker's public API is used (tests/unit/test_dependency_contracts.py checks both
modules), so its private members may change between releases without breaking them.
Failure ages come from ``time.time()`` and ``opened_at`` from ``datetime.now(UTC)``, both
controlled by freezegun in tests.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar, cast

import pybreaker

from queue_system.resilience.breaker_storage import WindowedMemoryStorage, WindowedRedisStorage

if TYPE_CHECKING:
    import redis

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("queue_system.resilience.breaker")

DEFAULT_FAILURE_THRESHOLD = 5  # failures inside the window that open the breaker
DEFAULT_RECOVERY_TIMEOUT_S = 30.0  # seconds an open breaker rejects calls before trials
DEFAULT_HALF_OPEN_MAX_CALLS = 3  # concurrent trial calls while half-open
DEFAULT_WINDOW_S = 60.0  # seconds a failure counts toward the threshold


class CircuitBreakerOpenError(pybreaker.CircuitBreakerError):
    """Raised at once, without calling the function, while a breaker rejects calls.

    Attributes:
        breaker_name: The breaker that rejected the call.
        retry_at: When an open breaker lets trial calls through (UTC), or ``None`` when a
            half-open breaker already runs its maximum of trial calls.
    """

    def __init__(
        self, message: str, *, breaker_name: str = "", retry_at: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.breaker_name = breaker_name
        self.retry_at = retry_at


@dataclass(frozen=True)
class BreakerSettings:
    """The settings of one named breaker; decorators sharing a name must agree on them."""

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    recovery_timeout: float = DEFAULT_RECOVERY_TIMEOUT_S
    half_open_max_calls: int = DEFAULT_HALF_OPEN_MAX_CALLS
    window_size: float = DEFAULT_WINDOW_S
    exceptions: tuple[type[BaseException], ...] = (Exception,)
    exclude: tuple[type[BaseException], ...] = ()
    redis_client: redis.Redis | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "half_open_max_calls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("recovery_timeout", "window_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        for name in ("exceptions", "exclude"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise TypeError(f"{name} must be a tuple of exception classes, got {value!r}")
        if not self.exceptions:
            raise ValueError("exceptions must name at least one exception class")

    def same_as(self, other: BreakerSettings) -> bool:
        """Return whether both describe one breaker (the Redis client compared by identity)."""
        return self == other and self.redis_client is other.redis_client


class _StateChangeLogger(pybreaker.CircuitBreakerListener):
    """Logs each state change as a structured record (``queue_system.resilience.breaker``)."""

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else None
        level = logging.WARNING if new_state.name == pybreaker.STATE_OPEN else logging.INFO
        logger.log(
            level,
            "circuit breaker %r: %s -> %s",
            cb.name,
            old,
            new_state.name,
            extra={
                "breaker": cb.name,
                "old_state": old,
                "new_state": new_state.name,
                "failure_count": cb.fail_counter,
            },
        )


class _Ticket(NamedTuple):
    """The state object that admitted a call, and whether the call is a half-open trial."""

    state: pybreaker.CircuitBreakerState
    trial: bool


class CircuitBreaker(pybreaker.CircuitBreaker):
    """A pybreaker ``CircuitBreaker`` with a failure window, a half-open trial limit and asyncio.

    Rules on top of pybreaker's: the call that reaches the threshold re-raises its own error
    (later calls get ``CircuitBreakerOpenError``); while half-open, the first trial success
    closes the breaker and a trial failure re-opens it; an excluded exception counts as a
    success (the service answered); a result that arrives after the breaker changed state
    since admitting the call is ignored; ``BaseException``s such as ``asyncio.CancelledError``
    count as neither success nor failure. With Redis-backed state the trial limit applies per
    process.
    """

    def __init__(self, name: str, settings: BreakerSettings) -> None:
        storage: pybreaker.CircuitBreakerStorage
        if settings.redis_client is not None:
            storage = WindowedRedisStorage(settings.redis_client, name, settings.window_size)
        else:
            storage = WindowedMemoryStorage(settings.window_size)
        super().__init__(
            fail_max=settings.failure_threshold,
            reset_timeout=settings.recovery_timeout,
            exclude=[self._is_excluded],
            listeners=[_StateChangeLogger()],
            state_storage=storage,
            name=name,
        )
        self.settings = settings
        self.breaker_name = name
        self._storage = storage  # our reference: pybreaker's is private
        # Serialises admit/finish; the guarded function runs outside it. pybreaker's own lock
        # is private; its public transitions take it themselves.
        self._gate = threading.Lock()
        self._trials_in_flight = 0

    def _is_excluded(self, exc: BaseException) -> bool:
        return not isinstance(exc, self.settings.exceptions) or isinstance(
            exc, self.settings.exclude
        )

    def call(self, func: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Call ``func`` under the breaker (no lock is held while it runs)."""
        ticket = self._admit(func, args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._finish(ticket, exc)
            raise
        self._finish(ticket, None)
        return result

    async def call_asyncio(self, func: Callable[..., Awaitable[R]], *args: Any, **kwargs: Any) -> R:
        """Await ``func(*args, **kwargs)`` under the breaker; the asyncio twin of ``call``."""
        ticket = self._admit(func, args, kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            self._finish(ticket, exc)
            raise
        self._finish(ticket, None)
        return result

    def is_quiet(self) -> bool:
        """True when a successful call would change nothing: closed, no failure counted, state
        in this process's memory, no listener but the state-change log. A lock-free read: a
        hot path may then run its call without :meth:`call`'s bookkeeping, as long as it hands
        a failure to :meth:`call` (a failure racing with this read counts as if it came after
        the success, which is one of the orders the two calls could have had)."""
        storage = self._storage
        return (
            type(storage) is WindowedMemoryStorage
            and storage.state == pybreaker.STATE_CLOSED
            and not storage.has_failures()
            and all(type(listener) is _StateChangeLogger for listener in self.listeners)
        )

    def reset(self) -> None:
        """Close the breaker and forget its failures (closing an open one is logged)."""
        with self._gate:
            if self.state.name != pybreaker.STATE_CLOSED:
                self.close()
            self._storage.reset_counter()
            self._trials_in_flight = 0

    def retry_at(self) -> datetime | None:
        """When an open breaker lets trial calls through (UTC), or ``None`` if unknown."""
        opened_at = self._storage.opened_at
        return None if opened_at is None else opened_at + timedelta(seconds=self.reset_timeout)

    def _admit(self, func: Callable[..., Any], args: Any, kwargs: Any) -> _Ticket:
        with self._gate:
            state = self.state
            if state.name == pybreaker.STATE_OPEN:
                retry_at = self.retry_at()
                if retry_at is not None:
                    remaining_s = (retry_at - datetime.now(timezone.utc)).total_seconds()
                    if remaining_s > 0:
                        raise CircuitBreakerOpenError(
                            f"circuit breaker {self.breaker_name!r} is open; it lets a trial call "
                            f"through in {remaining_s:.1f}s (at {retry_at.isoformat()})",
                            breaker_name=self.breaker_name,
                            retry_at=retry_at,
                        )
                self.half_open()
                state = self.state
            trial = state.name == pybreaker.STATE_HALF_OPEN
            if trial:
                limit = self.settings.half_open_max_calls
                if self._trials_in_flight >= limit:
                    raise CircuitBreakerOpenError(
                        f"circuit breaker {self.breaker_name!r} is half-open and already runs its "
                        f"{limit} trial call(s); retry once they finish",
                        breaker_name=self.breaker_name,
                    )
                self._trials_in_flight += 1
            for listener in self.listeners:
                listener.before_call(self, func, *args, **kwargs)
            return _Ticket(state, trial)

    def _finish(self, ticket: _Ticket, exc: BaseException | None) -> None:
        # pybreaker's own rules (its states' success and error handling, which are private),
        # applied to the state that admitted the call.
        with self._gate:
            if ticket.trial:
                self._trials_in_flight = max(0, self._trials_in_flight - 1)
            if exc is not None and not isinstance(exc, Exception):
                return  # cancellation or interrupt: says nothing about the service
            # pybreaker makes a new state object on every transition, so identity tells
            # whether the breaker changed state while this call ran (then the result is stale).
            if self.state is not ticket.state:
                return
            if exc is None or not self.is_system_error(exc):
                self._record_success(ticket)
            else:
                self._record_failure(ticket, exc)

    def _record_success(self, ticket: _Ticket) -> None:
        self._storage.reset_counter()
        if ticket.trial:
            self.close()
        for listener in self.listeners:
            listener.success(self)

    def _record_failure(self, ticket: _Ticket, exc: BaseException) -> None:
        self._storage.increment_counter()
        for listener in self.listeners:
            listener.failure(self, exc)
        if ticket.trial or self._storage.counter >= self.fail_max:
            self.open()


class BreakerRegistry:
    """Named breakers: every ``circuit_breaker`` with the same name shares one breaker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str) -> CircuitBreaker | None:
        """Return the breaker called ``name``, or ``None`` if no decorator created it."""
        with self._lock:
            return self._breakers.get(name)

    def get_or_create(self, name: str, settings: BreakerSettings) -> CircuitBreaker:
        """Return the breaker called ``name``, creating it with ``settings`` if new.

        Raises:
            ValueError: A breaker with this name exists with different settings.
        """
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = self._breakers[name] = CircuitBreaker(name, settings)
            elif not breaker.settings.same_as(settings):
                raise ValueError(
                    f"circuit breaker {name!r} already exists with other settings: "
                    f"{breaker.settings} != {settings}"
                )
            return breaker

    def reset(self) -> None:
        """Close every breaker and forget its failures (for tests).

        Breakers stay registered, so functions decorated earlier keep sharing them. A breaker
        with Redis-backed state is reset in Redis too.
        """
        with self._lock:
            registered = list(self._breakers.values())
        for breaker in registered:
            breaker.reset()


breakers = BreakerRegistry()
"""The process-wide named-breaker registry (the one registry the style guide allows)."""


def circuit_breaker(
    name: str | None = None,
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
    recovery_timeout: float = DEFAULT_RECOVERY_TIMEOUT_S,
    half_open_max_calls: int = DEFAULT_HALF_OPEN_MAX_CALLS,
    window_size: float = DEFAULT_WINDOW_S,
    exceptions: tuple[type[BaseException], ...] = (Exception,),
    exclude: tuple[type[BaseException], ...] = (),
    redis_client: redis.Redis | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Reject calls at once while the guarded operation keeps failing.

    Closed: calls run; ``failure_threshold`` failures within ``window_size`` seconds open the
    breaker (a success resets the count, as in pybreaker). Open: calls raise
    ``CircuitBreakerOpenError`` without running, for ``recovery_timeout`` seconds. Half-open:
    up to ``half_open_max_calls`` trial calls run at the same time, others are rejected; the
    first trial success closes the breaker, a trial failure re-opens it. Each state change is
    logged on ``queue_system.resilience.breaker`` with ``extra`` fields ``breaker``, ``old_state``,
    ``new_state`` and ``failure_count``.

    Args:
        name: Breaker name; decorators with the same name share one breaker. Default: the
            function's ``module.qualname`` (so all instances of a method share one).
        failure_threshold: Failures within the window that open the breaker.
        recovery_timeout: Seconds the breaker stays open before trial calls.
        half_open_max_calls: Concurrent trial calls allowed while half-open.
        window_size: Seconds a failure counts toward the threshold.
        exceptions: Exception classes counted as failures; others pass through uncounted.
        exclude: Exception classes never counted, even if listed in ``exceptions``. Like
            uncounted ones, they count as a success (the service answered).
        redis_client: A sync ``redis.Redis``; when given, the state lives in Redis under
            ``<name>:pybreaker:*`` so every process sees one breaker. Either
            ``decode_responses`` setting works. When that Redis is unreachable the breaker
            acts closed and counts nothing (as pybreaker's own Redis storage does), so a
            breaker guarding that same Redis should keep its state in memory.

    Returns:
        A decorator for ``def`` and ``async def`` functions and methods.

    Raises:
        ValueError: An invalid setting, or a breaker of this name exists with other settings.
        TypeError: Used bare as ``@circuit_breaker``; write ``@circuit_breaker()``.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}; use @circuit_breaker()")
    settings = BreakerSettings(
        failure_threshold=failure_threshold,
        recovery_timeout=recovery_timeout,
        half_open_max_calls=half_open_max_calls,
        window_size=window_size,
        exceptions=exceptions,
        exclude=exclude,
        redis_client=redis_client,
    )

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        default_name = f"{func.__module__}.{getattr(func, '__qualname__', type(func).__qualname__)}"
        breaker = breakers.get_or_create(name or default_name, settings)
        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await breaker.call_asyncio(async_func, *args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return breaker.call(func, *args, **kwargs)

        return wrapper

    return decorate
