"""Validation of names and numbers that cross the public API or come back from Redis. Pure.

Queue names and operation ids end up inside key names and are matched by the Lua scripts in
an envelope's opening bytes, so both are kept to a plain character set.
"""

from __future__ import annotations

import math
import re

from queue_system.core.types import PRIORITIES, Priority

QUEUE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
OPERATION_ID_MAX_LENGTH = 128
# Lua scripts read ids back from an envelope's opening bytes: keep them plain.
OPERATION_ID_PATTERN = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{OPERATION_ID_MAX_LENGTH}}}")

RESERVED_QUEUE_NAMES = frozenset(
    {
        *("registry", "failures", "system_errors", "inflight", "leases", "started_leases"),
        *("lease_seq", "receipt", "delayed", "redeliveries", "notify", "metrics"),
        *("dedup", "op", "workers", "worker", "ready", "queue_activity"),
        *("scheduled", "scheduled_counts"),
        *("paused", "limits", "limit"),
        *("cron_last", "cron_claims", "cron_schedules"),
        *("metrics_history",),  # the dashboard's chart samples
        *("done", "cancels"),
        *("dependents", "waits_on", "deps_outbox"),  # depends_on
    }
)
"""The namespace's own key names (``queue:failures``, ``queue:op:<id>``...): no new queue may
take one, so a queue never reads as one of them (``tests/unit/test_reserved_names.py`` keeps
this in step with every fixed key ``KeySpace`` builds)."""


def validate_queue_name(queue_name: str) -> str:
    """Return ``queue_name`` if it is safe inside a key, else raise ValueError."""
    if not isinstance(queue_name, str) or not QUEUE_NAME_PATTERN.fullmatch(queue_name):
        raise ValueError(
            f"queue_name {queue_name!r} is invalid: use 1-128 characters from "
            "letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return queue_name


def validate_new_queue_name(queue_name: str) -> str:
    """:func:`validate_queue_name`, and not one of ``RESERVED_QUEUE_NAMES`` (checked where a
    queue name is first used: enqueue). Existing queues of a reserved name stay readable."""
    validate_queue_name(queue_name)
    if queue_name in RESERVED_QUEUE_NAMES:
        raise ValueError(
            f"queue_name {queue_name!r} is reserved: the namespace's own keys use "
            f"{', '.join(sorted(RESERVED_QUEUE_NAMES))}; choose another name"
        )
    return queue_name


def validate_priority(priority: str) -> Priority:
    """Return ``priority`` if it is one of high/normal/low, else raise ValueError."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority {priority!r} is invalid: use one of {', '.join(PRIORITIES)}")
    return priority  # type: ignore[return-value,unused-ignore]


def validate_operation_id(operation_id: str) -> str:
    """Return ``operation_id`` if it is a plain id (see ``OPERATION_ID_PATTERN``), else raise."""
    if not isinstance(operation_id, str) or not OPERATION_ID_PATTERN.fullmatch(operation_id):
        raise ValueError(
            f"operation_id {operation_id!r} is invalid: use 1-{OPERATION_ID_MAX_LENGTH} "
            "characters from letters, digits, '_', '.', ':', '-'"
        )
    return operation_id


def validate_timeout(timeout: float | None) -> None:
    """Raise TypeError/ValueError unless ``timeout`` is None or a finite number > 0."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")


def require_positive(name: str, value: float) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
