"""Expiry: an item enqueued with ``expires=`` that was not started by then is never run.

The runner asks :func:`expired_at` before it starts a processor. An expired item ends in the
terminal status ``expired`` (``expire.lua``: fenced by its lease, counted as ``expired``, its
dedup key released) and its ``on_failure`` callback runs with ``reason="expired"``: it is
never dropped silently. Only an item that has not run yet expires: a retry of an item that
already ran (``attempts`` > 0) is not cut short by its ``expires_at``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from queue_system.core.records import callback_data
from queue_system.core.types import Envelope
from queue_system.worker.call import RunnableItem
from queue_system.worker.store import ClaimedItem, WorkerBroker

logger = logging.getLogger("queue_system.worker")


def expired_at(envelope: Envelope, now_s: float) -> float | None:
    """The item's ``expires_at`` when it has passed (``now_s >= expires_at``) and the item has
    never run; else None (it may start)."""
    expires = envelope.get("expires_at")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        return None
    if envelope.get("attempts", 0) or now_s < expires:
        return None
    return float(expires)


async def expire_item(
    *,
    item: ClaimedItem,
    runnable: RunnableItem,
    expires_at: float,
    now_s: float,
    broker: WorkerBroker,
    finish: Callable[..., Awaitable[bool]],
    spawn_callback: Callable[[Callable[..., Any], dict[str, Any]], None],
) -> bool:
    """End ``item`` as ``expired`` through ``finish`` (the runner's fenced write), then run
    its ``on_failure`` with ``reason="expired"`` if this worker still held the lease; returns
    whether it did."""
    env = runnable.envelope
    kept = await finish(
        item,
        broker.expire,
        item,
        operation_id=env["id"],
        dedup_key=env.get("dedup"),
        expired_at_s=expires_at,
        finished_s=now_s,
    )
    if not kept:
        return False
    late = now_s - expires_at
    logger.warning(
        "operation %s expired (%.3fs past its expires_at) before a worker started it; not run",
        env["id"],
        late,
        extra={"operation_id": env["id"], "reason": "expired"},
    )
    if runnable.on_failure is not None:
        data = callback_data(
            env,
            error=f"expired: not started by its expires_at ({late:.3f}s late)",
            error_type="Expired",
            history=env.get("history", []),
            reason="expired",
            expired_at=expires_at,
        )
        spawn_callback(runnable.on_failure, data)
    return True
