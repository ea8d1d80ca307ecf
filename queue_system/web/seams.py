"""What the dashboard reads from features that live elsewhere (pause, cancel, progress): one
small function each, so that the pages never reach into those modules directly."""

from __future__ import annotations

from typing import Any

import redis

from queue_system.config import QueueConfig
from queue_system.core.envelope import as_text
from queue_system.core.types import MetricsSnapshot
from queue_system.metrics.shared import compute_metrics
from queue_system.ops import limits
from queue_system.ops.admin import QueueAdmin


def paused_queues(config: QueueConfig) -> set[str] | None:
    """Names of queues with at least one paused tier; None while Redis does not answer (the
    overview then says so itself)."""
    try:
        return set(limits.paused(config))
    except redis.RedisError:
        return None


def counters(config: QueueConfig) -> MetricsSnapshot | None:
    """The shared counters (one HGETALL) as ``get_metrics()`` shapes them, without depths;
    None while Redis does not answer (the overview's per-tier table is left out)."""
    try:
        raw = config.redis_client.hgetall(config.keys.metrics)
    except redis.RedisError:
        return None
    return compute_metrics({as_text(k): float(v) for k, v in raw.items()})


def can_cancel(config: QueueConfig) -> bool:
    """True: operations can be cancelled (shows the Cancel button)."""
    return True


def cancel_operation(config: QueueConfig, operation_id: str) -> bool:
    """Cancel ``operation_id`` through :meth:`QueueAdmin.cancel` (which writes the audit
    record, as the CLI's ``cancel`` does); True when it was cancelled or is being stopped."""
    return QueueAdmin(config).cancel(operation_id) in ("cancelled", "cancelling")


def progress(operation: dict[str, Any]) -> float | None:
    """The reported progress as a fraction, when the processor reported a number in [0, 1]
    (``current_job().update_progress(0.4)``); None otherwise (the record shows the raw value)."""
    value = operation.get("progress")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None
