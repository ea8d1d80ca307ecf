"""Deploy skew: an item naming a processor or callback this worker does not know waits.

During a rolling deploy, or right after a restart before the module that registers a processor
is imported, a worker may claim an item it cannot run although another worker (or the next
release) can. Such an item is not poison: it goes back to the delayed set, no attempt consumed,
and is looked at again after 1 s, doubling to 60 s. Only ``unknown_processor_ttl`` after a
worker first saw it unknown (carried in the envelope as ``unknown_since``) does it go to
``system_errors`` as ``unknown_processor``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from queue_system.core.envelope import encode_envelope
from queue_system.core.registry import unknown_first_seen, unknown_recheck_due
from queue_system.core.types import Envelope
from queue_system.errors import SerializationError
from queue_system.worker.call import InvalidItem

WAITING_PAYLOAD_MAX_BYTES = 64 * 1024 * 1024  # re-encoding a waiting item never refuses it


@dataclass(frozen=True, kw_only=True)
class Wait:
    """Where an item with an unknown processor goes back to wait, and what its status says."""

    raw: bytes
    due_s: float
    operation_id: str
    last_error: str
    first_sight: bool


def plan_wait(exc: InvalidItem, now_s: float, ttl_s: float) -> Wait | InvalidItem:
    """A :class:`Wait` for an ``unknown_processor`` item, or the error to dead-letter it with
    once ``ttl_s`` has passed since a worker first saw it unknown."""
    envelope: dict[str, Any] = exc.envelope or {}
    first_seen = unknown_first_seen(envelope.get("unknown_since"), now_s)
    due = unknown_recheck_due(first_seen, now_s, ttl_s)
    if due is None:
        if ttl_s <= 0:  # never waited: the registry's message says it all
            return exc
        late = InvalidItem(
            exc.reason,
            f"{exc} (still unknown {now_s - first_seen:.0f}s after a worker first found it "
            f"unknown: past unknown_processor_ttl={ttl_s:g}s)",
            exc.envelope,
        )
        late.__cause__ = exc.__cause__
        return late
    waiting = {**envelope, "unknown_since": first_seen, "enqueued_at": due}
    try:
        raw = encode_envelope(cast(Envelope, waiting), max_bytes=WAITING_PAYLOAD_MAX_BYTES)
    except SerializationError:  # decoded from JSON, so only a non-finite number gets here
        return exc
    last_error = {
        "type": "UnknownProcessor",
        "message": str(exc),
        "unknown_since": first_seen,
        "gives_up_at": first_seen + ttl_s,
    }
    return Wait(
        raw=raw,
        due_s=due,
        operation_id=str(envelope["id"]),
        last_error=json.dumps(last_error),
        first_sight="unknown_since" not in envelope,
    )
