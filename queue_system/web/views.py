"""What each dashboard page shows, read from Redis. No HTTP here: plain data for templates.

Costs: the overview is one health snapshot (see :mod:`queue_system.ops.health`) plus the
bounded history list; a queue page is one LRANGE window of ``per_page`` items (never a whole
list) plus an LLEN per tier; the workers page reads the worker records and the in-flight hash
(bounded by workers x concurrency).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from queue_system.config import QueueConfig
from queue_system.core.clock import iso_utc
from queue_system.core.envelope import as_text
from queue_system.core.types import PRIORITIES, HealthSnapshot, MetricsSnapshot
from queue_system.ops.history import Interval

PREVIEW_CHARS = 160  # of a payload on the queue page (the operation page shows it all)
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
CHART_WIDTH, CHART_HEIGHT = 600, 120  # SVG user units
SHOWN_PER_WORKER = 10  # in-flight operation ids listed per worker


@dataclass(frozen=True, kw_only=True)
class WaitingItem:
    """One waiting item on the queue page (``position`` 1 is taken next)."""

    position: int
    operation_id: str | None
    processor: str | None
    attempts: int
    enqueued_at: str | None
    preview: str


@dataclass(frozen=True, kw_only=True)
class QueuePage:
    """One window of a tier's waiting list."""

    name: str
    priority: str
    depths: dict[str, int]
    ahead: int  # items in higher tiers, taken before any of this tier
    page: int
    per_page: int
    pages: int
    items: list[WaitingItem]


def clamp_per_page(value: int) -> int:
    """``per_page`` within 1..``MAX_PER_PAGE``."""
    return max(1, min(MAX_PER_PAGE, value))


def queue_page(
    config: QueueConfig, name: str, priority: str, *, page: int, per_page: int
) -> QueuePage:
    """The items of ``name``/``priority`` at positions ``(page-1)*per_page+1 ..``, in the
    order workers take them. Items are taken from the tail (RPOP), so position p is index -p:
    one LRANGE with negative indexes, O(offset from the nearer end + per_page)."""
    keys, client = config.keys, config.redis_client
    per_page = clamp_per_page(per_page)
    pipe = client.pipeline(transaction=False)
    for tier in PRIORITIES:
        pipe.llen(keys.queue(name, tier))
    depths: dict[str, int] = dict(zip(PRIORITIES, map(int, pipe.execute()), strict=True))
    depth = depths[priority]
    pages = max(1, -(-depth // per_page))
    page = max(1, min(page, pages))
    first = (page - 1) * per_page + 1
    last = min(depth, page * per_page)
    raw: list[bytes] = []
    if depth:
        raw = cast("list[bytes]", client.lrange(keys.queue(name, priority), -last, -first))
    tiers: list[str] = list(PRIORITIES)
    ahead = sum(depths[t] for t in tiers[: tiers.index(priority)])
    items = [waiting_item(first + i, data) for i, data in enumerate(reversed(raw))]
    return QueuePage(
        name=name,
        priority=priority,
        depths=depths,
        ahead=ahead,
        page=page,
        per_page=per_page,
        pages=pages,
        items=items,
    )


def waiting_item(position: int, raw: bytes) -> WaitingItem:
    """A waiting item from its stored envelope (junk is shown as text, never dropped)."""
    try:
        env = json.loads(raw)
    except ValueError:
        env = None
    if not isinstance(env, dict):
        text = raw.decode("utf-8", "replace")
        return WaitingItem(
            position=position,
            operation_id=None,
            processor=None,
            attempts=0,
            enqueued_at=None,
            preview=preview(text),
        )
    at = env.get("enqueued_at")
    return WaitingItem(
        position=position,
        operation_id=_str_or_none(env.get("id")),
        processor=_str_or_none(env.get("processor")),
        attempts=int(env.get("attempts") or 0),
        enqueued_at=iso_utc(float(at)) if isinstance(at, (int, float)) else None,
        preview=preview(json.dumps(env.get("entity"), default=str)),
    )


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def running_by_worker(config: QueueConfig) -> dict[str, list[str]]:
    """Worker id -> operation ids it holds a lease on now (the in-flight hash)."""
    found: dict[str, list[str]] = {}
    inflight = cast("dict[bytes, bytes]", config.redis_client.hgetall(config.keys.inflight))
    for token, value in inflight.items():
        worker_id = as_text(token).rpartition(":")[0]
        raw = value.partition(b"\n")[2]
        try:
            env = json.loads(raw)
        except ValueError:
            env = None
        op_id = env.get("id") if isinstance(env, dict) else None
        found.setdefault(worker_id, []).append(op_id if isinstance(op_id, str) else "?")
    return {w: sorted(ids)[:SHOWN_PER_WORKER] for w, ids in found.items()}


@dataclass(frozen=True, kw_only=True)
class TierRow:
    """One queue x tier on the overview: its waiting items and the outcomes of its items."""

    queue: str
    priority: str
    waiting: int
    oldest_age_s: float | None
    succeeded: int
    failed: int
    retried: int
    system_errors: int

    @property
    def success_rate(self) -> float | None:
        """Percent of finished items that succeeded (None while none finished)."""
        finished = self.succeeded + self.failed + self.system_errors
        return self.succeeded / finished * 100 if finished else None


def tier_rows(health: HealthSnapshot, counters: MetricsSnapshot | None) -> list[TierRow]:
    """Every queue x tier with something to show (items waiting, or counted outcomes), from
    the health snapshot and the shared counters (``compute_metrics``; None: not read)."""
    queues = counters["queues"] if counters else {}
    rows = []
    for name, stats in sorted(health["queue_stats"].items()):
        for priority in PRIORITIES:
            tier: dict[str, Any] = dict(queues.get(name, {}).get(priority) or {})
            row = TierRow(
                queue=name,
                priority=priority,
                waiting=stats[priority],
                oldest_age_s=stats["oldest_age_by_priority"].get(priority),
                succeeded=int(tier.get("succeeded", 0)),
                failed=int(tier.get("failed", 0)),
                retried=int(tier.get("retried", 0)),
                system_errors=int(tier.get("system_errors", 0)),
            )
            if row.waiting or row.succeeded or row.failed or row.retried or row.system_errors:
                rows.append(row)
    return rows


@dataclass(frozen=True, kw_only=True)
class Chart:
    """Polyline points (SVG user units) for the throughput and success-rate lines."""

    throughput_points: str
    success_points: str
    max_throughput: float
    last_throughput: float | None
    last_success_rate: float | None
    samples: int
    window_s: float
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT


def chart(intervals: list[Interval], window_s: float, now: float) -> Chart:
    """Lines over the last ``window_s`` seconds ending at ``now``: throughput (items/min,
    scaled to its maximum) and success rate (0-100 %), one point per interval."""
    top = max((i.throughput_per_min for i in intervals), default=0.0)

    def x(at: float) -> float:
        return max(0.0, CHART_WIDTH * (1 - (now - at) / window_s))

    def y(fraction: float) -> float:
        return CHART_HEIGHT * (1 - fraction)

    throughput = " ".join(
        f"{x(i.end):.1f},{y(i.throughput_per_min / top if top else 0.0):.1f}" for i in intervals
    )
    success = " ".join(
        f"{x(i.end):.1f},{y(i.success_rate / 100):.1f}"
        for i in intervals
        if i.success_rate is not None
    )
    rates = [i.success_rate for i in intervals if i.success_rate is not None]
    return Chart(
        throughput_points=throughput,
        success_points=success,
        max_throughput=top,
        last_throughput=intervals[-1].throughput_per_min if intervals else None,
        last_success_rate=rates[-1] if rates else None,
        samples=len(intervals),
        window_s=window_s,
    )


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON for a ``<pre>`` block."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
