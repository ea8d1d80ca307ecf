"""FakeClock: wall time the test moves by hand; durations still use the real monotonic clock."""

from __future__ import annotations

import time


class FakeClock:
    """A clock the test moves by hand (wall time); durations still use a real monotonic."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, seconds: float) -> None:
        self.now += seconds
