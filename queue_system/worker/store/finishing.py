"""The finishing half of ``WorkerBroker``: end a leased item as acked, retried later,
dead-lettered, deferred, expired or cancelled.

Each call is fenced by the item's lease token and answers whether the lease was still held.
A re-send (its reply was lost after the server ran it) recognises its own token in the item's
status record and answers "done".
"""

from __future__ import annotations

import json
from typing import Any

from redis.typing import EncodableT

from queue_system.core.checks import OPERATION_ID_PATTERN
from queue_system.core.clock import to_ms
from queue_system.core.types import DeadLetter
from queue_system.worker.start_marks import carry
from queue_system.worker.store.base import BrokerBase, ClaimedItem, Completion

#: What ``WorkerBroker.ack`` answers per item.
LOST, ACKED, CANCELLED = 0, 1, 2


class FinishCalls(BrokerBase):
    """Ack, retry, dead-letter, defer, expire and cancel held leases."""

    async def ack(self, completions: list[Completion], finished_s: float) -> list[int]:
        """Finish successful runs: per item ``ACKED``, ``LOST`` (the lease was lost) or
        ``CANCELLED`` (its cancel was requested meanwhile: it ended cancelled instead)."""
        keys = self._held(self.keys.metrics, self.keys.redeliveries, self.keys.started)
        keys.extend(self.keys.operation(c.operation_id) for c in completions)
        keys.extend(self.keys.done(c.operation_id) for c in completions)
        keys.extend(c.dedup_key for c in completions if c.dedup_key is not None)
        keys.append(self.keys.deps_outbox)
        args: list[Any] = [len(completions), self.config.backup_ttl, f"{finished_s:.3f}"]
        for c in completions:
            args.extend(_ack_values(c))
        # The executors that ran these items are starting their next ones now: those start
        # marks ride along (one round trip for both, see ack.lua).
        starts = self._starts.take()
        call = self.scripts.ack(keys=keys, args=args + (starts.tokens if starts else []))
        answer = await carry(starts, call)
        if len(answer) > len(completions) and int(answer[len(completions)]):
            self.dependents_waiting = True  # dependents to resolve (see ack.lua)
        return [int(flag) for flag in answer[: len(completions)]]

    async def schedule_retry(
        self,
        item: ClaimedItem,
        new_raw: bytes,
        due_s: float,
        *,
        operation_id: str,
        run_ms: int,
        queue_priority: str,
        wait_ms: int,
        attempts: int,
        last_error: str,
        dedup_key: str | None = None,
        record_ttl: int | None = None,
    ) -> bool:
        """Move a leased item to the delayed set; False if the lease was lost. An item whose
        cancel was requested meanwhile ends cancelled instead (``record_ttl``, its dedup key
        freed), and this answers True: the lease was held and the item is done here."""
        k = self.keys
        keys = self._held(
            k.delayed,
            k.metrics,
            k.operation(operation_id),
            k.redeliveries,
            k.started,
            k.done(operation_id),
            dedup_key=dedup_key,
        )
        keys.append(k.deps_outbox)  # always last (see schedule_retry.lua)
        args: list[EncodableT] = [
            item.token,
            item.list_key.encode() + b"\n" + new_raw,
            to_ms(due_s),
            run_ms,
            queue_priority,
            wait_ms,
            self.config.backup_ttl,
            attempts,
            last_error,
            operation_id,
            self.config.result_ttl if record_ttl is None else record_ttl,
            f"{self.config.clock.time():.3f}",
        ]
        return self._ended(await self.scripts.schedule_retry(keys=keys, args=args))

    async def dead_letter(
        self,
        item: ClaimedItem,
        record: DeadLetter,
        *,
        system_error: bool,
        run_ms: int = -1,
        dedup_key: str | None = None,
        wait_ms: int = 0,
    ) -> bool:
        """Move a leased item to system_errors or failures with ``record``; False if lost.

        ``record`` comes partly from untrusted bytes: its operation id and dedup key are used
        only when they are well-formed names under this namespace.
        """
        k = self.keys
        op_id = record["operation_id"] or ""
        has_status = bool(OPERATION_ID_PATTERN.fullmatch(op_id))
        receipt = k.finish_receipt(item.token)
        keys = self._held(
            k.system_errors if system_error else k.failures,
            k.metrics,
            k.redeliveries,
            k.started,
            k.operation(op_id) if has_status else receipt,
            k.done(op_id) if has_status else receipt,
            k.deps_outbox,
            dedup_key=dedup_key,
        )
        last_error = {"type": record["error_type"], "message": record["message"]}
        if record["history"]:
            last_error["traceback"] = record["history"][-1]["traceback"]
        args: list[EncodableT] = [
            item.token,
            json.dumps(record, separators=(",", ":"), default=str),
            self.config.dead_letter_cap,
            self.config.backup_ttl,
            "system_errors" if system_error else "failed",
            op_id,
            run_ms,
            "1" if has_status else "0",
            "error" if system_error else "failed",
            f"{record['at']:.3f}",
            record["attempts"],
            json.dumps(last_error),
            self._tier_of(item, record),
            wait_ms,
        ]
        return self._ended(await self.scripts.dead_letter(keys=keys, args=args))

    def _tier_of(self, item: ClaimedItem, record: DeadLetter) -> str:
        """``"<queue>:<priority>"`` of the list ``item`` was taken from (trusted, even for an
        item without an envelope), else the record's; ``""`` when neither is known."""
        parsed = self.keys.parse_queue(item.list_key)
        if parsed is not None:
            return f"{parsed[0]}:{parsed[1]}"
        if record["queue"] is not None and record["priority"] is not None:
            return f"{record['queue']}:{record['priority']}"
        return ""

    async def defer(
        self,
        item: ClaimedItem,
        new_raw: bytes,
        due_s: float,
        *,
        operation_id: str,
        last_error: str,
    ) -> bool:
        """Send a leased item back to the delayed set until ``due_s`` without consuming an
        attempt (its processor is unknown here); False if the lease was lost."""
        k = self.keys
        keys = self._held(k.delayed, k.operation(operation_id), k.redeliveries, k.started)
        member = item.list_key.encode() + b"\n" + new_raw
        args: list[EncodableT] = [item.token, member, to_ms(due_s), last_error, operation_id]
        return bool(await self.scripts.defer(keys=keys, args=args))

    async def expire(
        self,
        item: ClaimedItem,
        *,
        operation_id: str,
        dedup_key: str | None,
        expired_at_s: float,
        finished_s: float,
    ) -> bool:
        """End a leased item that was not started before its ``expires_at`` (terminal
        ``expired``); False if the lease was lost."""
        k = self.keys
        keys = self._held(
            k.metrics,
            k.redeliveries,
            k.started,
            k.operation(operation_id),
            k.done(operation_id),
            k.deps_outbox,
            dedup_key=dedup_key,
        )
        args: list[EncodableT] = [
            item.token,
            operation_id,
            self.config.backup_ttl,
            f"{expired_at_s:.3f}",
            f"{finished_s:.3f}",
        ]
        return self._ended(await self.scripts.expire(keys=keys, args=args))

    async def finish_cancelled(
        self, item: ClaimedItem, *, operation_id: str, dedup_key: str | None, record_ttl: int
    ) -> bool:
        """End a leased item whose cancel was requested as ``cancelled``; False if lost."""
        k = self.keys
        keys = self._held(
            k.started,
            k.redeliveries,
            k.operation(operation_id),
            k.done(operation_id),
            k.metrics,
            k.deps_outbox,
            dedup_key=dedup_key,
        )
        now = f"{self.config.clock.time():.3f}"
        args: list[EncodableT] = [item.token, operation_id, now, record_ttl, self.config.backup_ttl]
        return self._ended(await self.scripts.finish_cancelled(keys=keys, args=args))


def _ack_values(c: Completion) -> tuple[Any, ...]:
    """One item's 8 ARGV values in ``ack.lua``."""
    has_dedup = "1" if c.dedup_key else "0"
    return (
        c.item.token,
        c.operation_id,
        has_dedup,
        c.run_ms,
        c.queue_priority,
        c.wait_ms,
        c.result_json,
        c.result_ttl,
    )
