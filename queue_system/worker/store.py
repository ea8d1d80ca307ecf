"""WorkerBroker: the worker's Redis operations, each exactly one script call (asyncio).

Claim, ack, retry, dead-letter, renew, release, promote and recover. Tokens name leases:
``<worker id>:<sequence>``, unique because the worker id is. Every operation that finishes an
item checks that the caller still holds its lease (fencing) and reports when it does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions

from queue_system.config import NOTIFY_CAP, QueueConfig
from queue_system.core.checks import OPERATION_ID_PATTERN
from queue_system.core.clock import to_ms
from queue_system.core.envelope import as_text
from queue_system.core.types import DeadLetter
from queue_system.engine.keys import KeySpace
from queue_system.engine.scripts import Scripts

CLAIM_LIMIT = 1000  # most items one maintenance call moves (promote / recover)


@dataclass(frozen=True)
class ClaimedItem:
    """An item leased to this worker: its token, the list it came from, and its raw bytes."""

    token: str
    list_key: str
    raw: bytes


@dataclass(frozen=True)
class Completion:
    """A successful run waiting to be acked in the next batch."""

    item: ClaimedItem
    operation_id: str
    dedup_key: str | None
    run_ms: int
    queue_priority: str
    wait_ms: int
    result_json: str
    result_ttl: int
    processor: str = ""


@dataclass(frozen=True)
class Maintenance:
    """What one promote + recover pass found."""

    promoted: int
    next_due_ms: int | None
    delayed: int
    requeued: int
    in_flight: int
    crash_looped: list[tuple[ClaimedItem, int]]


class WorkerBroker:
    """Script calls for one worker; bind it to one event loop (create inside ``start``)."""

    def __init__(self, config: QueueConfig, client: redis.asyncio.Redis, worker_id: str) -> None:
        self.config = config
        self.keys: KeySpace = config.keys
        self.client = client
        self.worker_id = worker_id
        self.scripts = Scripts.register(client)
        self._sequence = 0
        self._lease_ms = to_ms(config.lease_timeout)

    def _next_sequence(self, reserve: int) -> int:
        """Reserve ``reserve`` token numbers; a script names them start+1 .. start+reserve."""
        start = self._sequence
        self._sequence += reserve
        return start

    async def claim(self, list_keys: list[str], count: int) -> list[ClaimedItem]:
        """Lease up to ``count`` items from ``list_keys`` (in priority order)."""
        if count <= 0 or not list_keys:
            return []
        start = self._next_sequence(count)
        answer = await self.scripts.claim(
            keys=[self.keys.inflight, self.keys.leases, *list_keys],
            args=[self._lease_ms, count, self.worker_id, start, self.keys.operation_prefix],
        )
        return self._claimed(answer)

    @staticmethod
    def _claimed(answer: list[bytes]) -> list[ClaimedItem]:
        return [
            ClaimedItem(answer[i].decode(), answer[i + 1].decode(), answer[i + 2])
            for i in range(0, len(answer), 3)
        ]

    async def ack(self, completions: list[Completion], finished_s: float) -> list[bool]:
        """Finish successful runs; False for each item whose lease was lost."""
        keys = [self.keys.inflight, self.keys.leases, self.keys.metrics]
        keys.extend(self.keys.operation(c.operation_id) for c in completions)
        keys.extend(c.dedup_key for c in completions if c.dedup_key is not None)
        args: list[Any] = [len(completions), self.config.backup_ttl, f"{finished_s:.3f}"]
        for c in completions:
            args.extend(
                (c.item.token, c.operation_id, "1" if c.dedup_key else "0", c.run_ms,
                 c.queue_priority, c.wait_ms, c.result_json, c.result_ttl)
            )  # fmt: skip
        answer = await self.scripts.ack(keys=keys, args=args)
        return [bool(flag) for flag in answer]

    async def schedule_retry(
        self, item: ClaimedItem, new_raw: bytes, due_s: float, *, operation_id: str,
        run_ms: int, queue_priority: str, wait_ms: int, attempts: int, last_error: str,
    ) -> bool:  # fmt: skip
        """Move a leased item to the delayed set; False if the lease was lost."""
        member = item.list_key.encode() + b"\n" + new_raw
        answer = await self.scripts.schedule_retry(
            keys=[self.keys.inflight, self.keys.leases, self.keys.delayed, self.keys.metrics,
                  self.keys.operation(operation_id)],
            args=[item.token, member, to_ms(due_s), run_ms, queue_priority, wait_ms,
                  self.config.backup_ttl, attempts, last_error],
        )  # fmt: skip
        return bool(answer)

    async def dead_letter(
        self, item: ClaimedItem, record: DeadLetter, *, system_error: bool, run_ms: int = -1,
        dedup_key: str | None = None, wait_ms: int = 0,
    ) -> bool:  # fmt: skip
        """Move a leased item to system_errors or failures with ``record``; False if lost.

        ``record`` comes partly from untrusted bytes: its operation id and dedup key are used
        only when they are well-formed names under this namespace.
        """
        target = self.keys.system_errors if system_error else self.keys.failures
        keys = [self.keys.inflight, self.keys.leases, target, self.keys.metrics]
        op_id = record["operation_id"] or ""
        has_status = bool(OPERATION_ID_PATTERN.fullmatch(op_id))
        if has_status:
            keys.append(self.keys.operation(op_id))
        if dedup_key is not None and dedup_key.startswith(self.keys.dedup_prefix):
            keys.append(dedup_key)
        last_error = {"type": record["error_type"], "message": record["message"]}
        if record["history"]:
            last_error["traceback"] = record["history"][-1]["traceback"]
        answer = await self.scripts.dead_letter(
            keys=keys,
            args=[item.token, json.dumps(record, separators=(",", ":"), default=str),
                  self.config.dead_letter_cap, self.config.backup_ttl,
                  "system_errors" if system_error else "failed", op_id, run_ms,
                  "1" if has_status else "0", "error" if system_error else "failed",
                  f"{record['at']:.3f}", record["attempts"], json.dumps(last_error),
                  f"{record['queue']}:{record['priority']}", wait_ms],
        )  # fmt: skip
        return bool(answer)

    async def renew(self, tokens: list[str]) -> list[str]:
        """Extend the leases on ``tokens``; returns the tokens that were lost."""
        if not tokens:
            return []
        answer = await self.scripts.renew(
            keys=[self.keys.inflight, self.keys.leases], args=[self._lease_ms, *tokens]
        )
        return [token for token, held in zip(tokens, answer, strict=False) if not held]

    async def release(self, tokens: list[str]) -> int:
        """Put leased items back at the head of their tier at once (tokens in claim order)."""
        if not tokens:
            return 0
        return int(
            await self.scripts.release(
                keys=[self.keys.inflight, self.keys.leases, self.keys.notify],
                args=[NOTIFY_CAP, self.keys.operation_prefix, *tokens],
            )
        )

    async def maintain(self, now_s: float) -> Maintenance:
        """Promote due retries and recover expired leases (one pipeline, two scripts)."""
        start = self._next_sequence(CLAIM_LIMIT)
        promoted = await self.scripts.promote_due(
            keys=[self.keys.delayed, self.keys.notify],
            args=[to_ms(now_s), CLAIM_LIMIT, NOTIFY_CAP, self.keys.operation_prefix],
        )
        recovered = await self.scripts.recover(
            keys=[self.keys.inflight, self.keys.leases, self.keys.redeliveries, self.keys.notify],
            args=[CLAIM_LIMIT, self.config.max_deliveries, self.config.backup_ttl,
                  self._lease_ms, self.worker_id, start, NOTIFY_CAP, self.keys.operation_prefix],
        )  # fmt: skip
        crash_looped = [
            (
                ClaimedItem(recovered[i].decode(), recovered[i + 1].decode(), recovered[i + 2]),
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

    async def wait_and_claim(
        self, list_keys: list[str], count: int, timeout_s: float
    ) -> tuple[bool, list[ClaimedItem]]:
        """Block until a producer signals work (or ``timeout_s``), then claim, in one round
        trip: Redis runs the claim the moment the wait ends. Returns (signalled, items).

        Never cancel this call: a claim lost in flight would wait for its lease to expire.
        """
        start = self._next_sequence(count)
        keys = [self.keys.inflight, self.keys.leases, *list_keys]
        args: list[str | int] = [
            self._lease_ms, count, self.worker_id, start, self.keys.operation_prefix,
        ]  # fmt: skip
        pipe = self.client.pipeline(transaction=False)
        pipe.brpop([self.keys.notify], timeout=max(timeout_s, 0.01))
        # EVALSHA directly: a Script in a pipeline costs an extra SCRIPT EXISTS round trip.
        pipe.evalsha(self.scripts.claim.sha, len(keys), *keys, *args)
        try:
            signal, answer = await pipe.execute()
        except redis.exceptions.NoScriptError:  # server restarted: the claim did not run
            return True, await self.claim(list_keys, count)
        return signal is not None, self._claimed(answer)

    async def queue_names(self) -> list[str]:
        """Every queue name registered in this namespace."""
        return sorted(as_text(n) for n in await self.client.smembers(self.keys.registry))

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
        answer = await self.scripts.defer(
            keys=[
                self.keys.inflight,
                self.keys.leases,
                self.keys.delayed,
                self.keys.operation(operation_id),
            ],
            args=[item.token, item.list_key.encode() + b"\n" + new_raw, to_ms(due_s), last_error],
        )
        return bool(answer)
