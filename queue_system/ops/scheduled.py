"""Upcoming items: what waits in the scheduled set (``delay=`` / ``run_at=``), soonest first.

Reads the ZSET in due order, in chunks of ``SCAN_CHUNK``: without a queue filter that is one
read of ``limit`` members; with one, chunks are read until ``limit`` items of that queue are
found (an operator's command, not a hot path). Counts per queue are cheaper: see
``scheduled_counts`` in :mod:`queue_system.engine.keys`.
"""

from __future__ import annotations

import json
from typing import Any, cast

from queue_system.config import QueueConfig
from queue_system.core.clock import iso_utc
from queue_system.core.envelope import as_text
from queue_system.core.types import ScheduledItem

SCAN_CHUNK = 1000


def list_scheduled(
    config: QueueConfig, queue_name: str | None = None, limit: int = 50
) -> list[ScheduledItem]:
    """Up to ``limit`` scheduled items (of ``queue_name`` when given), soonest first."""
    if limit <= 0:
        return []
    client = config.redis_client
    found: list[ScheduledItem] = []
    start = 0
    while len(found) < limit:
        chunk = SCAN_CHUNK if queue_name is not None else limit
        members = cast(
            "list[tuple[bytes, float]]",
            client.zrange(config.keys.scheduled, start, start + chunk - 1, withscores=True),
        )
        for member, due_ms in members:
            item = _item(config, member, due_ms)
            if queue_name is None or item["queue_name"] == queue_name:
                found.append(item)
                if len(found) == limit:
                    break
        if len(members) < chunk:
            break
        start += chunk
    return found


def _item(config: QueueConfig, member: bytes, due_ms: float) -> ScheduledItem:
    list_key, _, raw = member.partition(b"\n")
    parsed = config.keys.parse_queue(as_text(list_key))
    try:
        envelope: Any = json.loads(raw)
    except ValueError:  # items are data: a bad one is listed, not fatal
        envelope = None
    env: dict[str, Any] = envelope if isinstance(envelope, dict) else {}
    expires = env.get("expires_at")
    return {
        "operation_id": _text(env.get("id")),
        "queue_name": parsed[0] if parsed else None,
        "priority": parsed[1] if parsed else None,
        "processor": _text(env.get("processor")),
        "next_run_at": iso_utc(due_ms / 1000),
        "expires_at": iso_utc(expires) if isinstance(expires, (int, float)) else None,
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
