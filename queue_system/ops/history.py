"""The shared counters over time: samples kept in Redis for the dashboard's chart.

Every dashboard replica (and every ``/metrics`` scrape) may ask for a sample; ``sample_history.lua``
appends one only when the newest is older than ``interval_s``, so all replicas share one history
and it holds at most ``HISTORY_WINDOW_S / interval_s`` samples (one hour). Reading it is one
LRANGE of that bounded list: O(samples), never O(items).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import cast

from queue_system.config import QueueConfig
from queue_system.engine.scripts import script_source

HISTORY_WINDOW_S = 3600.0  # the chart shows the last hour
DEFAULT_SAMPLE_INTERVAL_S = 10.0  # one sample per 10 s: 360 samples for the hour
_FIELDS = ("enqueued", "processed", "succeeded", "failed", "system_errors")


@dataclass(frozen=True, kw_only=True)
class Sample:
    """The shared counters at one moment (``at``: epoch seconds)."""

    at: float
    enqueued: int
    processed: int
    succeeded: int
    failed: int
    system_errors: int


@dataclass(frozen=True, kw_only=True)
class Interval:
    """What happened between two samples: counts, and the rates derived from them."""

    start: float
    end: float
    processed: int
    succeeded: int
    finished: int  # succeeded + failed + system errors

    @property
    def throughput_per_min(self) -> float:
        """Items processed per minute over the interval."""
        span = self.end - self.start
        return self.processed * 60.0 / span if span > 0 else 0.0

    @property
    def success_rate(self) -> float | None:
        """Percent of the items that finished in the interval that succeeded (None: none)."""
        return self.succeeded * 100.0 / self.finished if self.finished else None


class CounterHistory:
    """Samples the shared counters into ``metrics_history`` and reads them back.

    Args:
        config: the namespace (its clock gives the sample times).
        interval_s: seconds between samples; the list keeps one hour's worth.
    """

    def __init__(
        self, config: QueueConfig, *, interval_s: float = DEFAULT_SAMPLE_INTERVAL_S
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.config = config
        self.interval_s = interval_s
        self.cap = max(2, int(HISTORY_WINDOW_S / interval_s) + 1)
        self._script = config.redis_client.register_script(script_source("sample_history"))

    def sample(self) -> bool:
        """Append a sample unless a recent one exists; True when one was appended."""
        keys = self.config.keys
        answer = self._script(
            keys=[keys.metrics_history, keys.metrics],
            args=[repr(self.config.clock.time()), self.interval_s, self.cap],
        )
        return bool(int(answer))

    def samples(self) -> list[Sample]:
        """The samples of the last hour, oldest first."""
        raw = cast(
            "list[bytes]",
            self.config.redis_client.lrange(self.config.keys.metrics_history, 0, self.cap - 1),
        )
        since = self.config.clock.time() - HISTORY_WINDOW_S
        found = [s for s in map(parse_sample, raw) if s is not None and s.at >= since]
        return sorted(found, key=lambda s: s.at)

    def intervals(self) -> list[Interval]:
        """Counts between consecutive samples, oldest first (a counter reset gives zeros)."""
        samples = self.samples()
        return [_between(a, b) for a, b in itertools.pairwise(samples)]


def parse_sample(raw: bytes | str) -> Sample | None:
    """A sample from its stored text, or None if it is not one."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    parts = text.split()
    if len(parts) != 1 + len(_FIELDS):
        return None
    try:
        counts = [int(float(p)) for p in parts[1:]]
        return Sample(at=float(parts[0]), **dict(zip(_FIELDS, counts, strict=True)))
    except ValueError:
        return None


def _between(a: Sample, b: Sample) -> Interval:
    # A counter that went down was reset (FLUSHDB, a new namespace): count nothing for it.
    def grew(name: str) -> int:
        return max(0, int(getattr(b, name)) - int(getattr(a, name)))

    succeeded = grew("succeeded")
    return Interval(
        start=a.at,
        end=b.at,
        processed=grew("processed"),
        succeeded=succeeded,
        finished=succeeded + grew("failed") + grew("system_errors"),
    )
