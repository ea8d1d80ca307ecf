"""Reading an operation's status record and the live-worker records (shared, no I/O).

An operation's life: ``pending`` → ``processing`` → ``completed``, or → ``scheduled`` (waiting
for a retry) → ``pending`` ..., ending ``failed`` (retries exhausted) or ``error`` (system
error). Records of finished operations are kept for the queue's result TTL; an unknown or
expired id reads as ``None``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from queue_system.core.envelope import as_text
from queue_system.core.types import PRIORITIES
from queue_system.engine.keys import KeySpace

_TIME_FIELDS = ("enqueued_at", "started_at", "finished_at", "next_run_at")


def iso_utc(epoch_s: float | None) -> str | None:
    """Epoch seconds → ISO 8601 UTC (``2026-11-23T16:08:00.123000+00:00``)."""
    if epoch_s is None:
        return None
    return dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc).isoformat()


def operation_from_record(
    operation_id: str, record: Mapping[bytes | str, bytes | str]
) -> dict[str, Any] | None:
    """The public dict for ``get_operation`` from a ``queue:op:<id>`` hash (None if empty)."""
    if not record:
        return None
    fields = {as_text(k): as_text(v) for k, v in record.items()}
    operation: dict[str, Any] = {
        "operation_id": operation_id,
        "status": fields.get("status"),
        "queue_name": fields.get("queue"),
        "priority": fields.get("priority"),
        "processor": fields.get("processor"),
        "attempts": int(fields.get("attempts", "0") or 0),
        "worker": fields.get("worker"),
        "last_error": _json_or_none(fields.get("last_error")),
        "result": _json_or_none(fields.get("result")),
        "position": None,
    }
    for name in _TIME_FIELDS:
        value = fields.get(name)
        operation[name] = iso_utc(float(value)) if value else None
    return operation


def higher_tier_keys(keys: KeySpace, queue_name: str, priority: str) -> list[str]:
    """The waiting lists of ``queue_name`` whose items are all taken before ``priority``'s."""
    tiers = PRIORITIES[: PRIORITIES.index(priority)]  # type: ignore[arg-type,unused-ignore]
    return [keys.queue(queue_name, tier) for tier in tiers]


def envelope_opening(operation_id: str) -> str:
    """The first bytes of every envelope of ``operation_id`` (what position.lua looks for)."""
    return '{"v":1,"id":"' + operation_id + '"'


def worker_from_record(record: Mapping[bytes | str, bytes | str]) -> dict[str, Any] | None:
    """The public dict for ``get_workers`` from a ``queue:worker:<id>`` hash."""
    if not record:
        return None
    fields = {as_text(k): as_text(v) for k, v in record.items()}
    queues = fields.get("queues", "*")
    return {
        "id": fields.get("id"),
        "host": fields.get("host"),
        "pid": int(fields.get("pid", "0")),
        "queues": None if queues == "*" else queues.split(","),
        "concurrency": int(fields.get("concurrency", "0")),
        "started_at": iso_utc(float(fields["started_at"])) if "started_at" in fields else None,
        "jobs_done": int(fields.get("jobs_done", "0")),
        "jobs_failed": int(fields.get("jobs_failed", "0")),
        "running": int(fields.get("running", "0")),
        "last_seen": iso_utc(float(fields["last_seen"])) if "last_seen" in fields else None,
    }


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
