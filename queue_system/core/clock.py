"""The one place that reads time. Inject another :class:`Clock` (or use freezegun) in tests."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for timestamps and schedules; monotonic time for durations."""

    def time(self) -> float:
        """Seconds since the epoch (wall clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations only)."""
        ...


class SystemClock:
    """The real clock (freezegun patches ``time.time`` underneath it)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def to_ms(seconds: float) -> int:
    """Seconds (float) → whole milliseconds, the unit every Redis score and ARGV time uses."""
    return int(seconds * 1000)


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds → ISO 8601 UTC with milliseconds: the one time format of the public API
    (``2026-11-23T16:08:00.123+00:00``)."""
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).isoformat(timespec="milliseconds")
