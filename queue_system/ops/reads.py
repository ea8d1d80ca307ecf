"""Read plans for the status views: queue depths, one operation, live workers. No I/O here.

Each ``read_*`` function is a plan (see :mod:`queue_system.engine.plans`): the sync and asyncio
managers run the same plan, so each conversation with Redis is written once.

An operation's life: ``pending`` → ``processing`` → ``completed``, or → ``scheduled`` (waiting
for a retry) → ``pending`` ..., ending ``failed`` (retries exhausted) or ``error`` (system
error); any state before the end may instead end ``cancelled`` (see ``ops/job_control.py``).
An item enqueued with ``delay=``/``run_at=`` starts ``scheduled`` (with ``next_run_at``); one
not started before its ``expires=`` ends ``expired`` (with ``expired_at``). Records of finished
operations are kept for the queue's result TTL; an unknown or expired id reads as ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from queue_system.core.clock import iso_utc
from queue_system.core.envelope import ENVELOPE_OPENING, as_text
from queue_system.core.types import PRIORITIES, OperationInfo, QueueStatus, WorkerInfo
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import Command, Plan

_TIME_FIELDS = ("enqueued_at", "started_at", "finished_at", "next_run_at")


def read_queue_status(keys: KeySpace) -> Plan[QueueStatus]:
    """Plan: the depth of every registered queue and tier, then failures, system errors, in
    flight, delayed (retries) and scheduled (``delay=``/``run_at=``), keyed by Redis key
    (``{"queue:high:emails": 5, ...}``)."""
    (names,) = yield [Command("smembers", keys.registry)]
    list_keys = [keys.queue(name, p) for name in sorted(map(as_text, names)) for p in PRIORITIES]
    totals = [keys.failures, keys.system_errors, keys.inflight, keys.delayed, keys.scheduled]
    replies = yield [
        *(Command("llen", key) for key in list_keys),
        Command("llen", keys.failures),
        Command("llen", keys.system_errors),
        Command("hlen", keys.inflight),
        Command("zcard", keys.delayed),
        Command("zcard", keys.scheduled),
    ]
    return {key: int(n) for key, n in zip([*list_keys, *totals], replies, strict=True)}


POSITION_SCAN_ITEMS = 1000
"""Items ``get_operation`` reads at most from each end of a waiting tier to find a position
(about 0.6 ms of server time per end for 600-byte items): exact near either end, a lower bound
(``position_at_least``) in the middle of a longer tier, and never a scan of a whole long list."""
POSITION_TOO_DEEP = -2  # position.lua: not within POSITION_SCAN_ITEMS of either end


def read_operation(keys: KeySpace, operation_id: str) -> Plan[OperationInfo | None]:
    """Plan: the status of one operation and, while it waits, its position.

    The position is how many items will be taken before it: its queue's higher tiers, plus
    the items ahead of it in its own tier. ``position.lua`` reads at most
    ``POSITION_SCAN_ITEMS`` items from each end of the tier inside Redis (a few ms at most,
    however long the list); an item deeper than that gets ``position_at_least`` instead.
    """
    (record,) = yield [Command("hgetall", keys.operation(operation_id))]
    operation = operation_from_record(operation_id, record)
    if operation is None or operation["status"] != "pending":
        return operation
    queue_name, priority = operation["queue_name"], operation["priority"]
    if queue_name is None or priority not in PRIORITIES:
        return operation
    higher = PRIORITIES[: PRIORITIES.index(priority)]  # type: ignore[arg-type,unused-ignore]
    *ahead, index = yield [
        *(Command("llen", keys.queue(queue_name, tier)) for tier in higher),
        Command(
            "position",
            envelope_opening(operation_id),
            POSITION_SCAN_ITEMS,
            keys=[keys.queue(queue_name, priority)],
            script=True,
        ),
    ]
    higher_tiers = sum(map(int, ahead))
    if int(index) >= 0:
        operation["position"] = higher_tiers + int(index)
    elif int(index) == POSITION_TOO_DEEP:
        operation["position_at_least"] = higher_tiers + POSITION_SCAN_ITEMS
    return operation


def read_workers(keys: KeySpace) -> Plan[list[WorkerInfo]]:
    """Plan: every live worker's record (each refreshes it; a dead one expires)."""
    (ids,) = yield [Command("zrange", keys.workers, 0, -1)]
    records = yield [Command("hgetall", keys.worker(as_text(worker_id))) for worker_id in ids]
    return [w for w in map(worker_from_record, records) if w is not None]


def operation_from_record(
    operation_id: str, record: Mapping[bytes | str, bytes | str]
) -> OperationInfo | None:
    """The public dict for ``get_operation`` from a ``queue:op:<id>`` hash (None if empty)."""
    if not record:
        return None
    fields = {as_text(k): as_text(v) for k, v in record.items()}
    times = {name: _time(fields.get(name)) for name in _TIME_FIELDS}
    return {
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
        "position_at_least": None,
        "enqueued_at": times["enqueued_at"],
        "started_at": times["started_at"],
        "finished_at": times["finished_at"],
        "next_run_at": times["next_run_at"],
        "expired_at": _time(fields.get("expired_at")),
        "progress": _json_or_none(fields.get("progress")),
        "cancel_requested_at": _time(fields.get("cancel_requested")),
        "depends_on": fields["depends_on"].split(",") if fields.get("depends_on") else None,
    }


def envelope_opening(operation_id: str) -> str:
    """The first bytes of every envelope of ``operation_id`` (what position.lua looks for)."""
    return ENVELOPE_OPENING + operation_id + '"'


def worker_from_record(record: Mapping[bytes | str, bytes | str]) -> WorkerInfo | None:
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
        "started_at": _time(fields.get("started_at")),
        "jobs_done": int(fields.get("jobs_done", "0")),
        "jobs_failed": int(fields.get("jobs_failed", "0")),
        "running": int(fields.get("running", "0")),
        "last_seen": _time(fields.get("last_seen")),
        "supervisor": fields.get("supervisor"),
    }


def _time(value: str | None) -> str | None:
    return iso_utc(float(value)) if value else None


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
