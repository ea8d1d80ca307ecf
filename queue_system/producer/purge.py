"""``purge_queue`` chunk by chunk: what each round reads and sends to ``purge.lua``. No I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from queue_system.config import QueueConfig
from queue_system.core.envelope import operation_id_of

PURGE_CHUNK = 1000
"""Items one purge script call removes at most: 1,000 items of 430 bytes took 4-5 ms of server
time (Valkey 9.1 and Redis 6.2), so other clients are served between chunks."""
PURGE_CHUNK_BYTES = 1 << 20
"""Bytes of items one purge call reads and removes at most (items may be up to
``max_payload_bytes`` each): the call's cost grows with the bytes it copies."""
PURGE_FIRST_READ = 16
"""Items read by a purge's first round trip, before their size is known."""

# The operation id in an envelope's fixed opening, as the Lua scripts read it
# (^{"v":1,"id":"([%w_.:%-]+)"); junk without it has no status record.
_DEDUP_SET = b'"dedup":"'  # only an envelope holding a dedup key has this (else "dedup":null)


@dataclass(kw_only=True)
class PurgeProgress:
    """One ``purge_queue`` call, chunk by chunk (sans-IO: the shells read, then send the plan).

    Each round reads ``next_read()`` items from the list's taking end (tail) and sends
    :meth:`plan` of them to ``purge.lua``; the purge ends when the list is empty or once
    ``left`` (the items waiting at the start) have been removed, so producers that keep
    pushing cannot make it run for ever.
    """

    left: int
    purged: int = 0
    read_size: int = PURGE_FIRST_READ

    def next_read(self) -> int:
        """How many items to read from the tail now (0: done)."""
        return max(0, min(self.left, self.read_size))

    def plan(
        self, config: QueueConfig, list_key: str, items: Sequence[bytes | str]
    ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of the ``purge.lua`` call removing ``items`` (as read from the
        tail, in list order; the tail-most ones if they exceed ``PURGE_CHUNK_BYTES``), with
        each one's status record and dedup key. Sizes the next read from these items."""
        raws = [item if isinstance(item, bytes) else item.encode() for item in items]
        size = sum(map(len, raws))
        self.read_size = max(1, min(PURGE_CHUNK, PURGE_CHUNK_BYTES * len(raws) // max(size, 1)))
        kept = 0
        for count, raw in enumerate(reversed(raws)):
            kept += len(raw)
            if kept > PURGE_CHUNK_BYTES and count > 0:
                raws = raws[len(raws) - count :]
                break
        keys = [list_key, config.keys.ready, config.keys.deps_outbox]
        args: list[Any] = [len(raws)]
        for raw in raws:
            op_id, dedup = _purged_keys(raw, config.keys.dedup_prefix)
            if op_id is not None:
                keys.append(config.keys.operation(op_id))
            if dedup is not None:
                keys.append(dedup)
            flags = ("1" if op_id is not None else "0") + ("1" if dedup is not None else "0")
            args.extend((raw, op_id or "", flags))
        return keys, args

    def removed(self, count: int) -> None:
        """Record the answer of one ``purge.lua`` call."""
        self.purged += count
        self.left -= count


def _purged_keys(raw: bytes, dedup_prefix: str) -> tuple[str | None, str | None]:
    """(operation id, dedup key) of one waiting item; None where it has none (or is junk)."""
    op_id = operation_id_of(raw)
    if op_id is None:
        return None, None
    if _DEDUP_SET not in raw:
        return op_id, None
    try:
        data = json.loads(raw)
    except ValueError:
        return op_id, None
    dedup = data.get("dedup") if isinstance(data, dict) else None
    # Items are data: only a key inside this namespace's dedup space is ever deleted.
    if isinstance(dedup, str) and dedup.startswith(dedup_prefix):
        return op_id, dedup
    return op_id, None
