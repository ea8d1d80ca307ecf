"""The upkeep half of ``WorkerBroker``: keep leases alive or give them back, promote due items,
recover expired leases, resolve dependents, and publish this worker's record.

A recover carries a call id (see ``BrokerBase._call_id``): its re-send answers what the first
run leased.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.typing import EncodableT

from queue_system.config import NOTIFY_CAP
from queue_system.core.clock import to_ms
from queue_system.core.envelope import as_text
from queue_system.engine.dependencies import (
    OUTBOX_PASSES,
    Resolution,
    ResolveLimits,
    outbox_entries,
    resolve_entry,
)
from queue_system.engine.plans import run_async
from queue_system.worker.store.base import BrokerBase, ClaimedItem

CLAIM_LIMIT = 1000  # most items one maintenance call moves (promote / recover)


@dataclass(frozen=True, kw_only=True)
class Maintenance:
    """What one promote + recover pass found."""

    promoted: int
    next_due_ms: int | None
    delayed: int
    requeued: int
    in_flight: int
    crash_looped: list[tuple[ClaimedItem, int]]


class UpkeepCalls(BrokerBase):
    """Renew, release, promote + recover, dependents, progress, cancel marks, heartbeats."""

    async def renew(self, tokens: list[str]) -> list[str]:
        """Extend the leases on ``tokens``; returns the tokens that were lost."""
        if not tokens:
            return []
        answer = await self.scripts.renew(keys=self._held(), args=[self._lease_ms, *tokens])
        return [token for token, held in zip(tokens, answer, strict=False) if not held]

    async def release(self, tokens: list[str]) -> int:
        """Put leased items back at the head of their tier at once (tokens in claim order)."""
        if not tokens:
            return 0
        keys = self._held(self.keys.notify, self.keys.started, self.keys.ready)
        args: list[EncodableT] = [NOTIFY_CAP, self.keys.operation_prefix, *tokens]
        return int(await self.scripts.release(keys=keys, args=args))

    async def maintain(self, now_s: float) -> Maintenance:
        """Promote due retries (by ``now_s``) and due scheduled items (by the server's clock),
        and recover expired leases (two script calls)."""
        k = self.keys
        promoted = await self.scripts.promote_due(
            keys=[k.delayed, k.notify, k.ready, k.scheduled, k.scheduled_counts],
            args=[to_ms(now_s), CLAIM_LIMIT, NOTIFY_CAP, k.operation_prefix],
        )
        async with self._call_id("recover") as call_id:
            recovered = await self.scripts.recover(
                keys=self._held(
                    k.redeliveries,
                    k.notify,
                    k.started,
                    k.lease_sequence,
                    k.claim_receipt(call_id),
                    k.ready,
                ),
                args=[
                    CLAIM_LIMIT,
                    self.config.max_deliveries,
                    self.config.backup_ttl,
                    self._lease_ms,
                    self.worker_id,
                    NOTIFY_CAP,
                    k.operation_prefix,
                ],
            )
        crash_looped = [
            (
                ClaimedItem(
                    token=recovered[i].decode(),
                    list_key=recovered[i + 1].decode(),
                    raw=recovered[i + 2],
                ),
                int(recovered[i + 3]),
            )
            for i in range(2, len(recovered), 4)
        ]
        next_due = int(promoted[1])
        return Maintenance(
            promoted=int(promoted[0]),
            next_due_ms=next_due if next_due >= 0 else None,
            delayed=int(promoted[2]),
            requeued=int(recovered[0]),
            in_flight=int(recovered[1]),
            crash_looped=crash_looped,
        )

    async def resolve_dependents(self) -> Resolution:
        """Release or fail the dependents of operations in the deps outbox (``depends_on``;
        see :mod:`queue_system.engine.dependencies`). Cheap when it is empty: one LRANGE."""
        self.dependents_waiting = False
        done = Resolution()
        limits = ResolveLimits(
            failures_cap=self.config.dead_letter_cap,
            ttl=self.config.backup_ttl,
            notify_cap=NOTIFY_CAP,
        )
        for _ in range(OUTBOX_PASSES):  # a failed dependent with dependents adds an entry
            entries = await run_async(self.client, self.scripts, outbox_entries(self.keys))
            for entry in entries:
                now = self.config.clock.time()
                plan = resolve_entry(self.keys, entry, now=now, limits=limits)
                done.add(await run_async(self.client, self.scripts, plan))
            if not entries:
                break
        return done

    async def write_progress(self, token: str, operation_id: str, progress_json: str) -> bool:
        """Store a running item's progress on its record; False once the lease is gone."""
        answer = await self.scripts.progress(
            keys=[self.keys.inflight, self.keys.operation(operation_id)],
            args=[token, progress_json],
        )
        return bool(answer)

    async def cancel_marks(self, operation_ids: list[str]) -> list[bool]:
        """Whether each operation's record carries a cancel request (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for op_id in operation_ids:
            pipe.hexists(self.keys.operation(op_id), "cancel_requested")
        return [bool(flag) for flag in await pipe.execute()]

    async def heartbeat(self, record: dict[str, str | int | float], ttl_s: float) -> None:
        """Publish this worker's record (expires after ``ttl_s``) and prune dead workers."""
        now_ms = to_ms(float(record["last_seen"]))
        key = self.keys.worker(self.worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={k: str(v) for k, v in record.items()})
        pipe.expire(key, int(ttl_s) + 1)
        pipe.zadd(self.keys.workers, {self.worker_id: now_ms})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms - to_ms(ttl_s))
        pipe.expire(self.keys.workers, int(ttl_s) + 1)
        await pipe.execute()

    async def unregister(self) -> None:
        """Remove this worker's record (clean stop)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.worker(self.worker_id))
        pipe.zrem(self.keys.workers, self.worker_id)
        await pipe.execute()

    async def queue_names(self) -> list[str]:
        """Every queue name registered in this namespace."""
        return sorted(as_text(n) for n in await self.client.smembers(self.keys.registry))
