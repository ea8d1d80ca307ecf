"""Periodic jobs: a schedule's ticks and which of them to fire now. Pure; no I/O.

A schedule is a cron expression evaluated in a time zone (by ``cronsim``, which follows
Debian cron, DST included: on a spring-forward day a daily job whose local time is skipped
runs at the first valid time after it; on a fall-back day it runs once, at the first
occurrence; jobs that run hourly or more often follow the clock, so an hourly job runs 23
times on a spring-forward day and 25 times on a fall-back day), or a fixed interval
(``every``) counted from the Unix epoch, so that every worker computes the same ticks.

Tick times are UTC epoch milliseconds. Which ticks fire is decided from the last tick fired
(kept in Redis) and now, by the schedule's ``catch_up`` policy (see :func:`ticks_to_fire`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CatchUp = Literal["none", "last", "all"]
CATCH_UP_POLICIES: tuple[CatchUp, ...] = ("none", "last", "all")

MAX_CATCH_UP = 100
"""With ``catch_up="all"``, at most this many missed ticks fire (the most recent ones); older
ones are dropped and logged. A worker fleet down for a day with a per-minute schedule would
otherwise flood its queue with 1,440 items at once."""
MISFIRE_GRACE_MS = 60_000
"""A tick at most this old is due, not missed: ``catch_up="none"`` still fires it (a worker
looks about once a second; this covers a slow loop or a short Redis outage)."""
MAX_TICKS_SCANNED = 10_000
"""Ticks counted at most when looking back over a long gap (beyond: "at least" this many)."""
MIN_EVERY_MS = 1_000
PUBLISH_INTERVAL_S = 30.0
"""How often a worker re-publishes the schedules it runs (``queue-system cron`` reads them)."""
STALE_AFTER_S = 3 * PUBLISH_INTERVAL_S
"""A published schedule not refreshed for this long is shown as stale: no live worker runs
it (removed from the code, or every worker is down)."""


@dataclass(frozen=True, kw_only=True)
class CronSpec:
    """One declared schedule (see ``QueueConfig.cron``): what to enqueue and when."""

    name: str
    processor: str
    expression: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    entity: dict[str, Any] = field(default_factory=dict)
    queue_name: str
    priority: str = "normal"
    catch_up: CatchUp = "none"

    def __post_init__(self) -> None:
        if (self.expression is None) == (self.every_ms is None):
            raise ValueError("give a cron expression or every=, exactly one of the two")
        if self.catch_up not in CATCH_UP_POLICIES:
            raise ValueError(
                f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {self.catch_up!r}"
            )
        zone(self.timezone)
        if self.expression is not None:
            if not isinstance(self.expression, str):
                raise TypeError(f"cron expression must be a str, got {self.expression!r}")
            try:
                CronSim(self.expression, dt.datetime(2000, 1, 1, tzinfo=zone(self.timezone)))
            except CronSimError as exc:
                raise ValueError(f"invalid cron expression {self.expression!r}: {exc}") from exc
        elif (
            isinstance(self.every_ms, bool)
            or not isinstance(self.every_ms, int)
            or self.every_ms < MIN_EVERY_MS
        ):
            raise ValueError(f"every must be at least 1 second, got {self.every_ms!r} ms")

    @property
    def when(self) -> str:
        """The expression, or ``every <seconds>s``: how the CLI shows it."""
        if self.expression is not None:
            return self.expression
        assert self.every_ms is not None
        return f"every {self.every_ms / 1000:g}s"

    def next_tick(self, after_ms: int) -> int | None:
        """The first tick strictly after ``after_ms``; None if there is none (in 50 years)."""
        if self.every_ms is not None:
            return (after_ms // self.every_ms + 1) * self.every_ms
        assert self.expression is not None
        tz = zone(self.timezone)
        start = dt.datetime.fromtimestamp(after_ms / 1000, dt.timezone.utc).astimezone(tz)
        ticks = CronSim(self.expression, start)
        # cronsim can answer a time before ``start`` when it lies in the repeated hour of a
        # fall-back day (after that day's single run): skip to the first one after it.
        for tick in ticks:
            tick_ms = int(tick.timestamp() * 1000)
            if tick_ms > after_ms:
                return tick_ms
        return None

    def to_json(self) -> str:
        """The spec as workers publish it (``queue-system cron`` reads it)."""
        return json.dumps(
            {
                "name": self.name,
                "processor": self.processor,
                "expression": self.expression,
                "every_ms": self.every_ms,
                "timezone": self.timezone,
                "queue_name": self.queue_name,
                "priority": self.priority,
                "catch_up": self.catch_up,
            },
            sort_keys=True,
        )


@dataclass(frozen=True, kw_only=True)
class FireDecision:
    """What to do now: fire ``fire`` (ascending tick times) and record ``last`` as fired.

    ``dropped`` missed ticks were skipped by the policy (``dropped_more``: at least that
    many; the count stopped at MAX_TICKS_SCANNED), the oldest of them at ``dropped_from``.
    """

    fire: list[int]
    last: int | None
    dropped: int = 0
    dropped_more: bool = False
    dropped_from: int | None = None


def ticks_to_fire(
    spec: CronSpec,
    *,
    last_ms: int | None,
    now_ms: int,
    grace_ms: int = MISFIRE_GRACE_MS,
    max_catch_up: int = MAX_CATCH_UP,
) -> FireDecision:
    """Which ticks in (``last_ms``, ``now_ms``] fire, by ``spec.catch_up``.

    The newest tick is *due* when it is at most ``grace_ms`` old; older ticks were *missed*
    (no worker ran then). ``none`` fires only a due tick; ``last`` fires the newest tick,
    due or missed; ``all`` fires every missed tick too, the newest ``max_catch_up`` at most.
    A schedule never fired (``last_ms`` None, e.g. just deployed) fires only a due tick.
    ``last`` of the answer is the newest tick seen (None if there is none yet), so that
    ticks skipped now are never fired later.
    """
    start = now_ms - grace_ms if last_ms is None else last_ms
    ticks: list[int] = []
    scanned = 0
    tick = spec.next_tick(start)
    first = tick
    while tick is not None and tick <= now_ms:
        scanned += 1
        ticks.append(tick)
        if len(ticks) > max_catch_up:
            del ticks[0]
        if scanned >= MAX_TICKS_SCANNED:  # a long gap: take the newest ticks from the end
            ticks = _newest_ticks(spec, now_ms, after_ms=tick, count=max_catch_up) or ticks
            break
        tick = spec.next_tick(tick)
    more = scanned >= MAX_TICKS_SCANNED
    if not ticks:
        return FireDecision(fire=[], last=last_ms)
    newest = ticks[-1]
    due = now_ms - newest <= grace_ms
    policy = "none" if last_ms is None else spec.catch_up
    if policy == "all":
        fire = ticks
    elif policy == "last" or due:
        fire = [newest]
    else:
        fire = []
    # A first sight only looks back over the grace window: nothing there was "missed".
    dropped = 0 if last_ms is None else scanned - len(fire)
    return FireDecision(
        fire=fire,
        last=newest,
        dropped=dropped,
        dropped_more=more,
        dropped_from=first if dropped else None,
    )


def _newest_ticks(spec: CronSpec, now_ms: int, *, after_ms: int, count: int) -> list[int]:
    """Up to ``count`` newest ticks in (``after_ms``, ``now_ms``], ascending, found from the
    end (without walking every tick of a long gap)."""
    if spec.every_ms is not None:
        newest = now_ms // spec.every_ms * spec.every_ms
        found = range(newest, after_ms, -spec.every_ms)
        return sorted(found[:count])
    assert spec.expression is not None
    end = dt.datetime.fromtimestamp(now_ms / 1000 + 1, dt.timezone.utc)
    ticks: set[int] = set()
    for tick in CronSim(spec.expression, end.astimezone(zone(spec.timezone)), reverse=True):
        tick_ms = int(tick.timestamp() * 1000)
        if tick_ms <= after_ms or len(ticks) >= count:
            break
        if tick_ms <= now_ms:
            ticks.add(tick_ms)
    return sorted(ticks)


def operation_id_for(name: str, tick_ms: int) -> str:
    """The operation id of the item a schedule enqueues for one tick: the same on every
    worker, so a second enqueue of the tick is a duplicate (see ``enqueue``)."""
    return f"cron:{name}:{tick_ms}"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError if it is unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be an IANA name like 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc
