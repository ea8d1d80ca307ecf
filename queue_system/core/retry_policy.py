"""QueueRetryConfig: the business-retry policy stored inside every item. Pure; no I/O.

``max_attempts`` counts *retries* after the first run, so an item runs at most
``1 + max_attempts`` times; retry ``n`` (1-based) waits ``delays[n-1]`` seconds (the last
delay repeats if there are fewer delays than attempts), scaled by a random jitter factor in
``[1 - jitter, 1 + jitter]``. ``timeout`` (seconds since the first run) stops retrying early.

Example::

    QueueRetryConfig.exponential(base=2.0, min_delay=1.0, max_delay=60.0, max_attempts=5)
    QueueRetryConfig.fixed(delay=30, max_attempts=3, timeout=300)
    QueueRetryConfig.custom(delays=[60, 300, 1800, 7200], timeout=86400)
    QueueRetryConfig(max_attempts=3, retry_on=[ConnectionError], give_up_on=[ValueError])

``retry_on`` / ``give_up_on`` are stored by exception *name* (see :func:`exception_name`), so
a worker decides without importing anything; :mod:`queue_system.core.retry_rules` applies them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_JITTER = 0.1  # ±10 % of each delay, so retries of many items do not arrive together
DEFAULT_BASE = 2.0
DEFAULT_MIN_DELAY_S = 1.0
DEFAULT_MAX_DELAY_S = 60.0


def exponential_delays(base: float, min_delay: float, max_delay: float, count: int) -> list[float]:
    """``[min_delay, min_delay*base, ...]`` capped at ``max_delay``, ``count`` long."""
    if base < 1 or min_delay < 0 or max_delay < min_delay:
        raise ValueError("need base >= 1 and 0 <= min_delay <= max_delay")
    return [min(min_delay * base**i, max_delay) for i in range(count)]


@dataclass
class QueueRetryConfig:
    """How often and how late a failed item is retried.

    Args:
        max_attempts: retries after the first run (0 = never retry).
        delays: seconds before retry 1, 2, ...; default exponential (base 2, from 1 s, max 60 s).
        timeout: stop retrying once this many seconds have passed since the first run.
        jitter: fraction by which each delay is randomly scaled up or down (0 = exact).
        retry_on: keyword only; exception classes (or names) worth retrying: any other
            exception fails the item at once. Empty (default): every exception is retried.
        give_up_on: keyword only; exception classes (or names) that fail the item at once,
            even if ``retry_on`` also names them. Both match an exception's class or any of its
            bases, by :func:`exception_name`.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    delays: list[float] | None = None
    timeout: float | None = None
    jitter: float = field(default=DEFAULT_JITTER)
    # Keyword only: the reference's positional order above stays as it was.
    _: KW_ONLY
    retry_on: Iterable[type[BaseException] | str] = ()
    give_up_on: Iterable[type[BaseException] | str] = ()

    def __post_init__(self) -> None:
        # Built for every item a worker runs: the common empty case costs no loop.
        self.retry_on = exception_names("retry_on", self.retry_on) if self.retry_on != () else ()
        self.give_up_on = (
            exception_names("give_up_on", self.give_up_on) if self.give_up_on != () else ()
        )
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0, got {self.max_attempts}")
        if self.delays is None:
            self.delays = self._generate_exponential_delays()
        self.delays = [_non_negative("delays[]", d) for d in self.delays]
        if self.max_attempts > 0 and not self.delays:
            raise ValueError("delays must not be empty when max_attempts > 0")
        if self.timeout is not None and _non_negative("timeout", self.timeout) == 0:
            raise ValueError("timeout must be > 0 or None")
        if not 0 <= _non_negative("jitter", self.jitter) <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def _generate_exponential_delays(self) -> list[float]:
        return exponential_delays(
            DEFAULT_BASE, DEFAULT_MIN_DELAY_S, DEFAULT_MAX_DELAY_S, self.max_attempts
        )

    @classmethod
    def fixed(
        cls,
        delay: float,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float | None = None,
        *,
        retry_on: Iterable[type[BaseException] | str] = (),
        give_up_on: Iterable[type[BaseException] | str] = (),
    ) -> QueueRetryConfig:
        """The same ``delay`` (seconds) before every retry; ``retry_on`` / ``give_up_on``
        as in the class."""
        return cls(
            max_attempts=max_attempts,
            delays=[delay],
            timeout=timeout,
            retry_on=retry_on,
            give_up_on=give_up_on,
        )

    @classmethod
    def exponential(
        cls,
        base: float = DEFAULT_BASE,
        min_delay: float = DEFAULT_MIN_DELAY_S,
        max_delay: float = DEFAULT_MAX_DELAY_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: float | None = None,
        *,
        retry_on: Iterable[type[BaseException] | str] = (),
        give_up_on: Iterable[type[BaseException] | str] = (),
    ) -> QueueRetryConfig:
        """Delays growing by ``base`` from ``min_delay`` up to ``max_delay`` seconds;
        ``retry_on`` / ``give_up_on`` as in the class."""
        delays = exponential_delays(base, min_delay, max_delay, max(max_attempts, 1))
        return cls(
            max_attempts=max_attempts,
            delays=delays,
            timeout=timeout,
            retry_on=retry_on,
            give_up_on=give_up_on,
        )

    @classmethod
    def custom(
        cls,
        delays: list[float],
        max_attempts: int | None = None,
        timeout: float | None = None,
        *,
        retry_on: Iterable[type[BaseException] | str] = (),
        give_up_on: Iterable[type[BaseException] | str] = (),
    ) -> QueueRetryConfig:
        """An explicit schedule; ``max_attempts`` defaults to ``len(delays)``; ``retry_on`` /
        ``give_up_on`` as in the class."""
        if not isinstance(delays, (list, tuple)) or not delays:
            raise ValueError("delays must be a non-empty list of seconds")
        attempts = len(delays) if max_attempts is None else max_attempts
        return cls(
            max_attempts=attempts,
            delays=list(delays),
            timeout=timeout,
            retry_on=retry_on,
            give_up_on=give_up_on,
        )

    def base_delay_for_attempt(self, attempt: int) -> float:
        """Delay in seconds before retry ``attempt`` (1-based), without jitter."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        assert self.delays is not None
        return self.delays[min(attempt, len(self.delays)) - 1]

    def get_delay_for_attempt(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay in seconds before retry ``attempt`` (1-based), with jitter applied."""
        base = self.base_delay_for_attempt(attempt)
        if not self.jitter:
            return base
        factor = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base * factor

    def has_attempts_left(self, retries_done: int) -> bool:
        """True if another retry is allowed after ``retries_done`` retries."""
        return retries_done < self.max_attempts

    def would_exceed_timeout(self, first_attempt_time: float, current_time: float) -> bool:
        """True if ``current_time`` (e.g. a retry's due time) lies past the retry deadline."""
        return self.timeout is not None and current_time - first_attempt_time > self.timeout

    @property
    def retry_on_names(self) -> tuple[str, ...]:
        """``retry_on`` as stored: exception names."""
        return tuple(str(name) for name in self.retry_on)

    @property
    def give_up_on_names(self) -> tuple[str, ...]:
        """``give_up_on`` as stored: exception names."""
        return tuple(str(name) for name in self.give_up_on)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form stored in each item; ``from_dict(to_dict())`` is equal to ``self``.

        ``retry_on`` / ``give_up_on`` appear only when set, so an item without them reads the
        same to a worker of an earlier release.
        """
        data: dict[str, Any] = {
            "max_attempts": self.max_attempts,
            "delays": list(self.delays or []),
            "timeout": self.timeout,
            "jitter": self.jitter,
        }
        if self.retry_on:
            data["retry_on"] = list(self.retry_on_names)
        if self.give_up_on:
            data["give_up_on"] = list(self.give_up_on_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueRetryConfig:
        """Rebuild from :meth:`to_dict` output; raises ValueError/TypeError on bad input."""
        if not isinstance(data, dict):
            raise TypeError(f"retry config must be a dict, got {type(data).__name__}")
        unknown = set(data) - {
            "max_attempts",
            "delays",
            "timeout",
            "jitter",
            "retry_on",
            "give_up_on",
        }
        if unknown:
            raise ValueError(f"unknown retry config fields: {sorted(unknown)}")
        delays = data.get("delays")
        if delays is not None and not isinstance(delays, list):
            raise TypeError("delays must be a list")
        return cls(
            max_attempts=data.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
            delays=delays,
            timeout=data.get("timeout"),
            jitter=data.get("jitter", DEFAULT_JITTER),
            retry_on=_name_list("retry_on", data["retry_on"]) if "retry_on" in data else (),
            give_up_on=_name_list("give_up_on", data["give_up_on"]) if "give_up_on" in data else (),
        )


def exception_name(cls: type[BaseException]) -> str:
    """The name ``retry_on`` / ``give_up_on`` store for ``cls``: ``"module.QualName"``, or the
    bare name for built-ins (``"ValueError"``, ``"app.errors.RateLimited"``)."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def exception_names(argument: str, entries: Iterable[type[BaseException] | str]) -> tuple[str, ...]:
    """Exception classes or names → stored names (a ``"builtins."`` prefix is dropped).

    Raises:
        TypeError: ``entries`` is a str or holds something else than an exception class or name.
        ValueError: a name is empty.
    """
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Iterable):
        raise TypeError(f"{argument} must be a list of exception classes or names")
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, type) and issubclass(entry, BaseException):
            name = exception_name(entry)
        elif isinstance(entry, str):
            if not entry.strip():
                raise ValueError(f"{argument} holds an empty exception name")
            name = entry.strip().removeprefix("builtins.")
        else:
            raise TypeError(f"{argument} must hold exception classes or names, got {entry!r}")
        if name not in names:
            names.append(name)
    return tuple(names)


def _name_list(argument: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise TypeError(f"{argument} must be a list of exception names")
    return exception_names(argument, value)


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
