"""Reading and rewriting a dead-letter list in chunks (for QueueAdmin's list, requeue, purge).

Reading one means scanning its list in chunks of ``SCAN_CHUNK`` records: O(records). A requeue
or purge removes the exact bytes of each record it read (LREM, in the script a ``build`` gives
for it); a pass during which others removed records is repeated, at most ``MAX_PASSES`` times,
and records already seen are not parsed twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from queue_system.core.records import parse_record
from queue_system.core.types import SkippedRecord
from queue_system.ops.dead_letters import DeadLetterFilter

SCAN_CHUNK = 500  # records read per round trip
MAX_PASSES = 10  # requeue/purge passes while other writers keep changing the list

# Queues a write of one record on a pipeline; the int is the LREM direction (1 or -1).
Write = Callable[[Any, int], None]

Build = Callable[[bytes, dict[str, Any] | None], Write | str]
"""Turns a matching record into its write, or into the reason it is skipped."""


@dataclass(kw_only=True)
class Outcome:
    """What a requeue or purge did: the operation ids written, the records skipped."""

    operation_ids: list[str] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)


def _chunk(client: redis.Redis, list_key: str, start: int) -> list[bytes]:
    return cast("list[bytes]", client.lrange(list_key, start, start + SCAN_CHUNK - 1))


def scan(
    client: redis.Redis, list_key: str, flt: DeadLetterFilter
) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """Matching records, newest first, each once even if new records shift the chunks."""
    seen: set[bytes] = set()
    index = 0
    while chunk := _chunk(client, list_key, index):
        index += len(chunk)
        for raw in chunk:
            if not flt.could_match(raw):
                continue
            record = parse_record(raw)
            digest = hashlib.sha1(raw, usedforsecurity=False).digest()
            if flt.matches(record) and digest not in seen:
                seen.add(digest)
                yield raw, record


def mutate(
    client: redis.Redis,
    list_key: str,
    flt: DeadLetterFilter,
    build: Build,
    *,
    dry_run: bool,
    limit: int | None,
) -> Outcome:
    outcome = Outcome()
    seen: set[bytes] = set()
    for _ in range(MAX_PASSES):
        length = int(client.llen(list_key))
        index = removed = 0
        while chunk := _chunk(client, list_key, index):
            todo: list[tuple[int, bytes, dict[str, Any] | None]] = []
            for offset, raw in enumerate(chunk):
                digest = hashlib.sha1(raw, usedforsecurity=False).digest()
                if digest in seen:
                    continue
                seen.add(digest)
                if flt.could_match(raw):
                    record = parse_record(raw)
                    if flt.matches(record):
                        todo.append((index + offset, raw, record))
            done = _apply(client, list_key, todo, length, build, outcome, dry_run, limit)
            removed += done
            index += len(chunk) - done
            if full(outcome, limit):
                break
        # New records (LPUSH at the head) only make the scan re-read some; records removed
        # by another operator ahead of the cursor may have been skipped: scan again.
        settled = int(client.llen(list_key)) >= length - removed
        if dry_run or settled or full(outcome, limit):
            break
    return outcome


def _apply(
    client: redis.Redis,
    list_key: str,
    todo: list[tuple[int, bytes, dict[str, Any] | None]],
    length: int,
    build: Build,
    outcome: Outcome,
    dry_run: bool,
    limit: int | None,
) -> int:
    """Write one chunk's matches in one pipeline; returns how many records it removed."""
    pipe = client.pipeline(transaction=False)
    pending: list[str | None] = []
    for position, raw, record in todo:
        op_id = (record or {}).get("operation_id")
        op_id = op_id if isinstance(op_id, str) else None
        write = build(raw, record)
        if isinstance(write, str):
            outcome.skipped.append({"operation_id": op_id, "reason": write})
            continue
        if full(outcome, limit, len(pending)):
            break
        if dry_run:
            outcome.operation_ids.append(op_id or "")
            continue
        # LREM walks from the end nearer the record (a requeue of all is then O(records)).
        write(pipe, 1 if position < length // 2 else -1)
        pending.append(op_id)
    if not pending:
        return 0
    removed = 0
    for op_id, answer in zip(pending, pipe.execute(), strict=True):
        if int(answer):
            removed += 1
            outcome.operation_ids.append(op_id or "")
    return removed


def full(outcome: Outcome, limit: int | None, pending: int = 0) -> bool:
    return limit is not None and len(outcome.operation_ids) + pending >= limit
