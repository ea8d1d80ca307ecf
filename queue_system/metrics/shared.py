"""The counter hash every process shares in Redis, and the ``get_metrics()`` view of it.

The Lua scripts increment these fields in the same step as the state change they count (no
extra round trip per job); :func:`compute_metrics` turns the hash into the public dict. Pure;
no I/O: :func:`read_metrics` is a plan that a shell runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from queue_system.core.envelope import as_text
from queue_system.core.types import PRIORITIES, MetricsSnapshot, TierMetrics
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import Command, Plan

ENQUEUED = "enqueued"
PROCESSED = "processed"
SUCCEEDED = "succeeded"
FAILED = "failed"
RETRIED = "retried"
SYSTEM_ERRORS = "system_errors"
EXPIRED = "expired"  # items not started before their expires= (expire.lua)
CANCELLED = "cancelled"  # items cancelled (cancel.lua, finish_cancelled.lua)
#: Sum of the run time (ms) of every processed item.
PROCESS_TIME_MS_TOTAL = "process_time_ms_total"
COUNTER_FIELDS = (
    ENQUEUED,
    PROCESSED,
    SUCCEEDED,
    FAILED,
    RETRIED,
    SYSTEM_ERRORS,
    EXPIRED,
    CANCELLED,
)

_WAIT_MS_TOTAL = "wait_ms_total:"
_WAIT_COUNT = "wait_count:"
_PROCESSED_BY_QUEUE = "processed:"
#: Outcomes also counted per queue x priority, as ``<name>:<queue>:<priority>`` (the scripts
#: that count the global also count the tier: enqueue, ack, dead_letter, schedule_retry).
TIER_COUNTERS = (ENQUEUED, SUCCEEDED, FAILED, RETRIED, SYSTEM_ERRORS)


def wait_total_field(queue: str, priority: str) -> str:
    """Hash field summing the ms items of ``queue``/``priority`` waited before they started."""
    return f"{_WAIT_MS_TOTAL}{queue}:{priority}"


def wait_count_field(queue: str, priority: str) -> str:
    """Hash field counting the items of ``queue``/``priority`` whose wait was added."""
    return f"{_WAIT_COUNT}{queue}:{priority}"


def processed_field(queue: str, priority: str) -> str:
    """Hash field counting the processed items of ``queue``/``priority``."""
    return f"{_PROCESSED_BY_QUEUE}{queue}:{priority}"


def tier_field(counter: str, queue: str, priority: str) -> str:
    """Hash field counting ``counter`` (one of :data:`TIER_COUNTERS`) for ``queue``/``priority``."""
    return f"{counter}:{queue}:{priority}"


def _queue_priority(suffix: str) -> tuple[str, str]:
    # Queue names may contain ":"; priorities never do, so split on the last one.
    queue, _, priority = suffix.rpartition(":")
    return queue, priority


def compute_metrics(
    counters: Mapping[str, int | float], depths: Mapping[str, int] | None = None
) -> MetricsSnapshot:
    """Build the ``get_metrics()`` dict from the shared counter hash and the list lengths.

    Args:
        counters: the Redis counter hash, decoded (field -> number); missing fields count 0.
        depths: ``"<queue>:<priority>"`` -> length of that waiting list.

    Returns:
        ``enqueued``, ``processed``, ``succeeded``, ``failed``, ``retried``, ``system_errors``,
        ``expired``, ``cancelled`` (ints); ``success_rate``: percent of finished items that
        succeeded (succeeded / (succeeded + failed + system_errors) * 100, 0.0 while none finished);
        ``avg_process_time``: mean run time in ms of processed items (0.0 while none);
        ``queues``: ``{queue: {priority: {"depth", "avg_wait_ms", "processed", "enqueued",
        "succeeded", "failed", "retried", "system_errors"}}}`` for every queue/priority seen in
        ``depths`` or in the per-queue fields.
    """
    result: dict[str, Any] = {name: int(counters.get(name, 0)) for name in COUNTER_FIELDS}
    finished = result[SUCCEEDED] + result[FAILED] + result[SYSTEM_ERRORS]
    result["success_rate"] = result[SUCCEEDED] / finished * 100 if finished else 0.0
    processed = result[PROCESSED]
    total_ms = float(counters.get(PROCESS_TIME_MS_TOTAL, 0))
    result["avg_process_time"] = total_ms / processed if processed else 0.0

    # (queue, priority) -> [depth, wait ms total, wait count, processed, *TIER_COUNTERS]
    prefixes = (_WAIT_MS_TOTAL, _WAIT_COUNT, _PROCESSED_BY_QUEUE, *(f"{c}:" for c in TIER_COUNTERS))
    width = 1 + len(prefixes)
    rows: dict[tuple[str, str], list[float]] = {}
    for field, amount in counters.items():
        for column, prefix in enumerate(prefixes, 1):
            if field.startswith(prefix):
                row = rows.setdefault(_queue_priority(field[len(prefix) :]), [0.0] * width)
                row[column] = float(amount)
    for queue_priority, length in (depths or {}).items():
        rows.setdefault(_queue_priority(queue_priority), [0.0] * width)[0] = length

    queues: dict[str, dict[str, TierMetrics]] = {}
    for (queue, priority), (depth, wait_ms, waits, done, *outcomes) in sorted(rows.items()):
        tier: dict[str, Any] = {
            "depth": int(depth),
            "avg_wait_ms": wait_ms / waits if waits else 0.0,
            "processed": int(done),
        }
        tier.update(zip(TIER_COUNTERS, map(int, outcomes), strict=True))
        queues.setdefault(queue, {})[priority] = cast(TierMetrics, tier)
    result["queues"] = queues
    return cast(MetricsSnapshot, result)


def with_local(
    shared: MetricsSnapshot, local: Mapping[str, float], named: Mapping[str, float]
) -> MetricsSnapshot:
    """``shared`` plus this process's view: every series under ``local``, and each metric
    updated without labels (``config.update_metric(name)``) under its own name, unless a shared
    total already holds that name (the shared total wins; the local value stays in ``local``).
    """
    result: dict[str, Any] = dict(shared)
    result["local"] = dict(local)
    for name, value in named.items():
        result.setdefault(name, value)
    return cast(MetricsSnapshot, result)


def read_metrics(keys: KeySpace) -> Plan[MetricsSnapshot]:
    """Plan: the shared counter hash and every registered queue's depth per tier, as the
    ``get_metrics()`` dict (without ``local``)."""
    counters, names = yield [Command("hgetall", keys.metrics), Command("smembers", keys.registry)]
    tiers = [(name, p) for name in sorted(map(as_text, names)) for p in PRIORITIES]
    lengths = yield [Command("llen", keys.queue(name, p)) for name, p in tiers]
    depths = {f"{name}:{p}": int(n) for (name, p), n in zip(tiers, lengths, strict=True)}
    return compute_metrics({as_text(k): float(v) for k, v in counters.items()}, depths)
