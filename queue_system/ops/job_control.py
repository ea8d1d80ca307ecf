"""Job control for callers: cancel one operation, and what ``wait_for`` makes of a record.

``cancel_operation`` is a read plan (see :mod:`queue_system.engine.plans`) that the sync and
asyncio managers both run. It reads the status record, finds the item where the record says
it is (a waiting list: ``position.lua`` then ``LINDEX``; the delayed set: ``ZSCAN``), and
hands its exact bytes to ``cancel.lua``, which removes it only if it is still there and the
record still says so. When a worker took the item meanwhile the script answers "moved" and the
plan reads again (a running item gets a cancel request instead).

``wait_for`` (in the managers) registers as a waiter with ``wait_register.lua`` and blocks on
the operation's done LIST (``BLPOP``), which the scripts that end an operation fill only when
a waiter is counted: nothing is written or read on the ack path while nobody waits.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from queue_system.config import QueueConfig
from queue_system.core.envelope import as_text, operation_id_of
from queue_system.core.types import PRIORITIES, CancelStatus, OperationInfo, RunningOperation
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import Command, Plan
from queue_system.errors import (
    OperationCancelled,
    OperationExpired,
    OperationFailed,
    OperationNotFound,
    QueueSystemError,
    WaitTimeout,
)
from queue_system.ops.reads import envelope_opening, operation_from_record

#: Statuses after which an operation never changes again.
FINAL_STATUSES = frozenset({"completed", "failed", "error", "cancelled", "expired"})
CANCEL_ATTEMPTS = 20  # re-reads when the item keeps moving under the cancel (a busy worker)
SCAN_COUNT = 1000  # delayed members examined per ZSCAN call


def cancel_nonce() -> str:
    """A new nonce for one ``cancel`` call: a re-sent script (or a re-run of the whole plan
    by the breaker's retry) recognises the cancel it made itself."""
    return uuid.uuid4().hex


def cancel_operation(config: QueueConfig, operation_id: str, nonce: str) -> Plan[CancelStatus]:
    """Plan: cancel ``operation_id`` (see ``QueueManager.cancel``); ``nonce`` from
    :func:`cancel_nonce`, the same for every run of this plan for one call."""
    keys = config.keys
    status_key = keys.operation(operation_id)
    opening = envelope_opening(operation_id)
    for _ in range(CANCEL_ATTEMPTS):
        (record,) = yield [Command("hgetall", status_key)]
        fields = {as_text(k): as_text(v) for k, v in record.items()}
        status = fields.get("status")
        if status is None:
            return "not_found"
        if status == "cancelled" and fields.get("cancel_nonce") == nonce:
            return "cancelled"  # by this very call: a retry of the plan after a lost reply
        if status in FINAL_STATUSES:
            return "already_finished"
        queue, priority = fields.get("queue", ""), fields.get("priority", "")
        if priority not in PRIORITIES:
            raise QueueSystemError(f"operation {operation_id}: record names no valid priority")
        list_key = keys.queue(queue, priority)
        zset = keys.delayed  # a "scheduled" item waits here (a retry) or in keys.scheduled
        if status == "pending":
            (index,) = yield [Command("position", opening, keys=[list_key], script=True)]
            if int(index) < 0:
                continue  # taken meanwhile: read the record again
            (raw,) = yield [Command("lindex", list_key, -1 - int(index))]
            if raw is None or not as_text(raw).startswith(opening):
                continue
            mode, found = "waiting", raw
        elif status == "scheduled":
            member = yield from _find_member(zset, opening)
            if member is None:  # a delay= / run_at= item
                zset = keys.scheduled
                member = yield from _find_member(zset, opening)
            if member is None:
                continue
            mode, found = "scheduled", member
        elif status == "processing":
            mode, found = "running", b""
        elif status == "waiting_for_dependencies":  # held in its record: see depends_on
            held = [status_key, keys.waits_on(operation_id), keys.done(operation_id)]
            held += [keys.metrics, keys.deps_outbox]
            held_args = [f"{config.clock.time():.3f}", config.result_ttl_for(queue), nonce]
            held_args += [config.backup_ttl, operation_id]
            (answer,) = yield [Command("cancel_dependent", *held_args, keys=held, script=True)]
            if as_text(answer) == "moved":
                continue  # released or failed meanwhile: read the record again
            return "cancelled"
        else:  # a state this version does not know how to cancel
            raise QueueSystemError(f"operation {operation_id} cannot be cancelled ({status})")
        dedup = _dedup_of(found, keys.dedup_prefix)
        script_keys = [status_key, list_key, zset, keys.ready, keys.done(operation_id)]
        script_keys += [keys.metrics, keys.scheduled_counts, keys.deps_outbox]
        if dedup is not None:
            script_keys.append(dedup)
        args: list[Any] = [
            mode,
            found,
            operation_id,
            f"{config.clock.time():.3f}",
            config.result_ttl_for(queue),
            keys.cancels,
            nonce,
            config.backup_ttl,
            "1" if zset == keys.scheduled else "0",
        ]
        (answer,) = yield [Command("cancel", *args, keys=script_keys, script=True)]
        answer = as_text(answer)
        if answer != "moved":
            return answer  # type: ignore[return-value]
    raise QueueSystemError(f"operation {operation_id} kept moving; cancel not done, try again")


def _find_member(zset: str, opening: str) -> Plan[bytes | None]:
    """Plan: the member of ``zset`` (delayed or scheduled) holding the item that starts with
    ``opening``."""
    pattern = "*\n" + _glob_escape(opening) + "*"
    cursor: int = 0
    while True:
        ((cursor, members),) = yield [Command("zscan", zset, cursor, pattern, SCAN_COUNT)]
        for member, _score in members:
            return bytes(member)
        if int(cursor) == 0:
            return None


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _dedup_of(raw: bytes, dedup_prefix: str) -> str | None:
    """The dedup key an item (or a delayed member "<list key>\\n<item>") names, read from
    its JSON; only a key under this namespace."""
    item = raw if raw.startswith(b"{") else raw.partition(b"\n")[2]
    if not item:
        return None
    try:
        value = json.loads(item).get("dedup")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value.startswith(dedup_prefix) else None


def settle(operation_id: str, record: Any) -> tuple[bool, Any, OperationInfo | None]:
    """What ``wait_for`` answers for ``record`` (an HGETALL reply, dict or flat list):
    (True, result, info) once it completed; (False, None, info) while it has not ended.
    Raises the typed error of an operation that ended otherwise, or is unknown."""
    if isinstance(record, list):
        record = dict(zip(record[::2], record[1::2], strict=True))
    info = operation_from_record(operation_id, record)
    if info is None:
        raise OperationNotFound(f"no operation {operation_id!r} (unknown, or expired)", None)
    status = info["status"]
    if status == "completed":
        return True, info["result"], info
    if status in ("failed", "error"):
        error = info["last_error"] or {}
        detail = f": {error.get('type')}: {error.get('message')}" if error else ""
        raise OperationFailed(f"operation {operation_id} {status}{detail}", info)
    if status == "cancelled":
        raise OperationCancelled(f"operation {operation_id} was cancelled", info)
    if status == "expired":
        raise OperationExpired(f"operation {operation_id} expired before it ran", info)
    return False, None, info


def wait_chunk(config: QueueConfig, remaining: float) -> float:
    """Seconds one ``BLPOP`` may block: under the reply timeout of the manager's client (a
    longer block would read as a dead server), at least 10 ms (0 would block for ever)."""
    return max(0.01, min(remaining, config.connection_timeout * 0.8))


def read_running(keys: KeySpace, limit: int) -> Plan[list[RunningOperation]]:
    """Plan: up to about ``limit`` leased items (one ``HSCAN`` page of ``inflight``) with
    their records' worker, start time, progress and cancel mark, oldest start first."""
    ((_cursor, entries),) = yield [Command("hscan", keys.inflight, 0, None, limit)]
    ids = [operation_id_of(bytes(value).partition(b"\n")[2]) for value in entries.values()]
    found = sorted({op_id for op_id in ids if op_id})[:limit]
    fields = ("queue", "processor", "worker", "started_at", "progress", "cancel_requested")
    replies = yield [Command("hmget", keys.operation(op_id), *fields) for op_id in found]
    running: list[RunningOperation] = []
    for op_id, values in zip(found, replies, strict=True):
        record: dict[bytes | str, bytes | str] = {
            name: value for name, value in zip(fields, values, strict=True) if value
        }
        info = operation_from_record(op_id, record)
        if info is None:
            continue
        running.append(
            {
                "operation_id": op_id,
                "queue_name": info["queue_name"],
                "processor": info["processor"],
                "worker": info["worker"],
                "started_at": info["started_at"],
                "progress": info["progress"],
                "cancel_requested_at": info["cancel_requested_at"],
            }
        )
    running.sort(key=lambda r: r["started_at"] or "")
    return running


def is_final(record: Any) -> bool:
    """Whether a ``wait_register.lua`` reply (a flat HGETALL list) shows an operation that
    will not change any more: it ended, or it is unknown."""
    fields = dict(zip(record[::2], record[1::2], strict=True))
    status = fields.get(b"status", fields.get("status"))
    return status is None or as_text(status) in FINAL_STATUSES


def outcome(operation_id: str, record: Any, timeout: float) -> Any:
    """What ``wait_for`` answers for its last record: the result, or the typed error of an
    operation that ended otherwise, is unknown, or had not ended within ``timeout``."""
    finished, result, info = settle(operation_id, record)
    if finished:
        return result
    status = info["status"] if info else None
    raise WaitTimeout(f"operation {operation_id} still {status} after {timeout}s", info)
