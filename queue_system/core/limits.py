"""Queue limits: a fleet-wide concurrency cap and rate limit per queue. Pure; no I/O.

``QueueLimits(max_concurrency=3, rate_limit="10/s")`` is declared on ``QueueConfig(limits=...)``
or set at runtime (``queue-system limits set``). Redis holds the live value of each queue as one
field of ``KeySpace.limits``, encoded by :func:`encode_limits` as ``"<max_concurrency>
<rate count> <rate window ms> <source>"`` (0 = none), which ``claim.lua`` reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Source = Literal["config", "runtime"]
SOURCES: tuple[Source, ...] = ("config", "runtime")

_WINDOWS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*")
_RECORD = re.compile(r"(\d+) (\d+) (\d+) (config|runtime)")


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """At most ``count`` starts in any window of ``window_ms`` milliseconds."""

    count: int
    window_ms: int

    def __str__(self) -> str:
        unit = next(u for u, ms in _WINDOWS_MS.items() if ms == self.window_ms)
        return f"{self.count}/{unit}"


def parse_rate(text: str) -> RateLimit:
    """``"100/s"``, ``"10/m"`` or ``"500/h"`` as a :class:`RateLimit`; ValueError otherwise."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(
            f"rate limit {text!r} is invalid: use '<N>/s', '<N>/m' or '<N>/h' with N > 0"
        )
    return RateLimit(count=int(match.group(1)), window_ms=_WINDOWS_MS[match.group(2)])


@dataclass(frozen=True, kw_only=True)
class QueueLimits:
    """Limits of one queue, enforced across every worker by the claim script.

    Args:
        max_concurrency: items of the queue leased at once across the fleet (None: no cap).
        rate_limit: ``"N/s"``, ``"N/m"`` or ``"N/h"``: at most N claims in any such window
            (a sliding window on the server's clock; None: no limit).
    """

    max_concurrency: int | None = None
    rate_limit: str | None = None

    def __post_init__(self) -> None:
        cap = self.max_concurrency
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
            raise ValueError(f"max_concurrency must be an int > 0 or None, got {cap!r}")
        if self.rate_limit is not None:
            object.__setattr__(self, "rate_limit", str(parse_rate(self.rate_limit)))

    @property
    def rate(self) -> RateLimit | None:
        """The parsed ``rate_limit``."""
        return None if self.rate_limit is None else parse_rate(self.rate_limit)

    @property
    def empty(self) -> bool:
        """True when neither limit is set."""
        return self.max_concurrency is None and self.rate_limit is None


def encode_limits(limits: QueueLimits, source: Source) -> str:
    """The Redis field value of ``limits`` (see the module docstring)."""
    rate = limits.rate
    return (
        f"{limits.max_concurrency or 0} {rate.count if rate else 0} "
        f"{rate.window_ms if rate else 0} {source}"
    )


def decode_limits(raw: str) -> tuple[QueueLimits, Source] | None:
    """Parse a value written by :func:`encode_limits`; None if it is malformed."""
    match = _RECORD.fullmatch(raw)
    if match is None:
        return None
    cap, count, window_ms = (int(match.group(i)) for i in (1, 2, 3))
    unit = next((u for u, ms in _WINDOWS_MS.items() if ms == window_ms), None)
    if count and unit is None:
        return None
    try:
        limits = QueueLimits(
            max_concurrency=cap or None, rate_limit=f"{count}/{unit}" if count else None
        )
    except ValueError:
        return None
    return limits, "runtime" if match.group(4) == "runtime" else "config"
