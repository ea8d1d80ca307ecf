"""Resolving ``depends_on``: release or fail the dependents of operations that ended.

An item enqueued with ``depends_on`` waits in its status record (``enqueue_dependent.lua``).
The scripts that end an operation whose record has ``has_dependents`` push
``"<operation id> <status>"`` onto the ``deps_outbox`` LIST in the same atomic step; a worker
then runs :func:`resolve_entry` for each entry: it reads a chunk of the operation's
dependents and their held items (one pipelined round trip), and ``resolve_dependents.lua``
releases or fails them and drops the entry once none is left. Every step is safe to re-send
and safe to run by two workers at once, and an entry left by a worker that died is taken up
by any other (the outbox is read on every maintenance tick): nothing polls all items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from queue_system.core.envelope import as_text
from queue_system.core.records import dependency_failure_head, dependency_record_tail
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import Command, Plan

RESOLVE_CHUNK = 200
"""Dependents one ``resolve_dependents.lua`` call handles at most (4 keys each)."""
OUTBOX_READ = 100
"""Outbox entries one pass reads."""
OUTBOX_PASSES = 10
"""Passes one resolution makes at most: a failure cascades by pushing new entries."""


@dataclass(frozen=True, kw_only=True)
class ResolveLimits:
    """The numbers ``resolve_dependents.lua`` needs from the configuration."""

    failures_cap: int
    ttl: int
    notify_cap: int


@dataclass(kw_only=True)
class Resolution:
    """What resolving one or more outbox entries did."""

    #: Dead-letter records of the children failed with reason ``dependency_failed``.
    failed: list[dict[str, Any]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    #: Outbox entries handled (one resolved by someone else at the same time counts too).
    entries: int = 0

    def add(self, other: Resolution) -> None:
        self.failed.extend(other.failed)
        self.released.extend(other.released)
        self.entries += other.entries


def outbox_entries(keys: KeySpace) -> Plan[list[str]]:
    """Plan: the oldest entries of the outbox (at most ``OUTBOX_READ``)."""
    (entries,) = yield [Command("lrange", keys.deps_outbox, 0, OUTBOX_READ - 1)]
    return [as_text(entry) for entry in entries]


def resolve_entry(
    keys: KeySpace, entry: str, *, now: float, limits: ResolveLimits
) -> Plan[Resolution]:
    """Plan: resolve every dependent of the operation an outbox ``entry`` names, chunk by
    chunk, until its dependents set and the entry are gone."""
    dep, _, status = entry.partition(" ")
    dependents = keys.dependents(dep)
    done = Resolution(entries=1)
    while True:
        (members,) = yield [Command("srandmember", dependents, RESOLVE_CHUNK)]
        children = sorted(as_text(member) for member in members)
        reads: list[Any] = []
        if children:  # (no empty batch: an asyncio pipeline that is never run warns)
            reads = yield [
                Command("hmget", keys.operation(c), "held_item", "held_list", "deps_failure_mode")
                for c in children
            ]
        script_keys = [
            keys.deps_outbox,
            keys.registry,
            keys.notify,
            keys.metrics,
            keys.ready,
            keys.failures,
            dependents,
        ]
        args: list[Any] = [
            entry,
            dep,
            status,
            f"{now:.3f}",
            limits.failures_cap,
            limits.ttl,
            limits.notify_cap,
            len(children),
        ]
        heads: dict[str, str] = {}
        for child, (held_item, held_list, mode) in zip(children, reads, strict=True):
            status_key = keys.operation(child)
            list_key = as_text(held_list) if held_list else status_key  # not waiting: untouched
            script_keys += [status_key, keys.waits_on(child), list_key, keys.done(child)]
            head = ""
            if status != "completed" and held_item and as_text(mode or b"") != "run":
                head = dependency_failure_head(_held_envelope(held_item), now)
            heads[child] = head
            args += [child, head]
        (answer,) = yield [Command("resolve_dependents", *args, keys=script_keys, script=True)]
        left, failed, released = int(answer[0]), answer[1], answer[2]
        for child in map(as_text, failed):
            done.failed.append(json.loads(heads[child] + dependency_record_tail(dep, status)))
        done.released.extend(map(as_text, released))
        if left == 0:
            return done


def _held_envelope(held_item: bytes | str) -> dict[str, Any]:
    """The held item's envelope as a dict (``{}`` if it is not a JSON object: the dead letter
    still names the operation through its record)."""
    try:
        data = json.loads(held_item)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
