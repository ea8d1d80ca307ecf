"""WorkerBroker: the worker's Redis operations, each exactly one script call (asyncio).

Claim, start (batched in ``start_marks.py``), ack, retry, dead-letter, renew, release, promote
and recover. Tokens name leases: ``<worker id>:<n>``, ``n`` handed out by the server (never
reused). Every operation that finishes an item checks that the caller still holds its lease
(fencing) and reports when it does not.

Every script is safe to re-send: a reply can be lost after the server ran the call, and
redis-py's ``Retry`` (one reconnect) or the worker's own retry sends it again. A claim or
recover carries a call id, and its re-run answers what the first run leased; a call that
raised keeps its id for the next call of its kind, so the worker's retry re-sends it too. A
re-run of ack / schedule_retry / dead_letter recognises its own token in the item's status
record and answers "done".
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.typing import EncodableT

from queue_system.config import NOTIFY_CAP, QueueConfig
from queue_system.core.checks import OPERATION_ID_PATTERN
from queue_system.core.clock import to_ms
from queue_system.core.envelope import as_text
from queue_system.core.hooks import JobInfo
from queue_system.core.limits import encode_limits
from queue_system.core.types import DeadLetter
from queue_system.engine.dependencies import (
    OUTBOX_PASSES,
    Resolution,
    ResolveLimits,
    outbox_entries,
    resolve_entry,
)
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import run_async
from queue_system.engine.scripts import Scripts
from queue_system.worker.start_marks import StartMarks, carry

CLAIM_LIMIT = 1000  # most items one maintenance call moves (promote / recover)
# Most items one claim leases: a claim's reply and its server time grow with it, and a larger
# one only makes items wait in this worker's buffer. The script itself takes any count.
MAX_CLAIM_ITEMS = 1000


@dataclass(frozen=True, kw_only=True)
class ClaimedItem:
    """An item leased to this worker: its token, the list it came from, and its raw bytes.

    ``started`` is True when the claim already marked it started (see ``mark_started``).
    """

    token: str
    list_key: str
    raw: bytes
    started: bool = False


@dataclass(frozen=True, kw_only=True)
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
    job: JobInfo | None = None  # what hooks are told (None: built from the fields above)
    #: ``on_failure`` and its data, fired instead when the ack finds a cancel request.
    on_cancelled: tuple[Callable[..., Any], dict[str, Any]] | None = None


@dataclass(frozen=True, kw_only=True)
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
        self.scripts = config.durable(Scripts.register(client))
        self._lease_ms = to_ms(config.lease_timeout)
        # Call ids must never repeat, even for two brokers that share a worker id.
        self._call_prefix = f"{worker_id}:{uuid.uuid4().hex[:12]}"
        self._call_numbers = itertools.count(1)
        self._unanswered: dict[str, str] = {}  # kind -> id of a call that raised
        self._list_limit_keys: dict[str, tuple[str, str, str, str]] = {}
        #: Set when a finishing script pushed an operation onto the deps outbox.
        self.dependents_waiting = False
        #: What the last claim said about limits: None when no list was held back by one, else
        #: seconds until a rate window frees room (0.0: a concurrency cap is full).
        self.held_back_s: float | None = None
        self._starts = StartMarks(
            lambda tokens: self.scripts.start(
                keys=[self.keys.inflight, self.keys.started], args=tokens
            )
        )

    @asynccontextmanager
    async def _call_id(self, kind: str) -> AsyncIterator[str]:
        """A call id for one ``kind`` of call; kept for the next call if this one raises
        (it may have run), so that the retry is recognised as a re-send."""
        call_id = self._unanswered.pop(kind, None) or (
            f"{self._call_prefix}:{kind}:{next(self._call_numbers)}"
        )
        try:
            yield call_id
        except BaseException:
            self._unanswered[kind] = call_id
            raise

    def claim_keys(self, list_keys: list[str], call_id: str) -> list[str]:
        """KEYS of ``claim.lua`` for a claim from ``list_keys`` under ``call_id``."""
        keys = [
            self.keys.inflight,
            self.keys.leases,
            self.keys.started,
            self.keys.lease_sequence,
            self.keys.claim_receipt(call_id),
            self.keys.ready,
            self.keys.limits,
            self.keys.paused,
        ]
        for list_key in list_keys:
            keys.extend(self._limit_keys(list_key)[1:])
        return keys

    def claim_args(
        self, count: int, *, start_now: int, prune: bool, list_keys: list[str]
    ) -> list[str | int]:
        """ARGV of ``claim.lua`` (see its header), without the start marks."""
        start_now = max(0, start_now)
        return [
            self._lease_ms,
            count,
            self.worker_id,
            start_now,
            self.keys.operation_prefix,
            "1" if prune else "0",
            len(list_keys),
            *(self._limit_keys(key)[0] for key in list_keys),
        ]

    def _limit_keys(self, list_key: str) -> tuple[str, str, str, str]:
        """(queue name, list key, limit:running key, limit:starts key) of a waiting list."""
        found = self._list_limit_keys.get(list_key)
        if found is None:
            parsed = self.keys.parse_queue(list_key)
            if parsed is None:
                raise ValueError(f"{list_key!r} is not a waiting list of this namespace")
            name = parsed[0]
            found = (name, list_key, self.keys.limit_running(name), self.keys.limit_starts(name))
            self._list_limit_keys[list_key] = found
        return found

    async def claim(
        self, list_keys: list[str], count: int, *, start_now: int = 0, prune: bool = False
    ) -> list[ClaimedItem]:
        """Lease up to ``count`` items (at most ``MAX_CLAIM_ITEMS``) from ``list_keys``, in
        priority order. The first ``start_now`` are marked started (free executors take them
        at once), so they need no ``mark_started`` call. ``prune``: the lists were read from
        the ready index, and those found empty leave it."""
        count = min(count, MAX_CLAIM_ITEMS)
        if count <= 0 or not list_keys:
            return []
        starts = self._starts.take()  # pending start marks ride along (claim.lua)
        async with self._call_id("claim") as call_id:
            args = self.claim_args(count, start_now=start_now, prune=prune, list_keys=list_keys)
            if starts is not None:
                args.extend(starts.tokens)
            call = self.scripts.claim(keys=self.claim_keys(list_keys, call_id), args=args)
            answer = await carry(starts, call)
        return self._claimed(answer)

    def _claimed(self, answer: list[Any]) -> list[ClaimedItem]:
        marked = int(answer[0])
        wait_ms = int(answer[1])
        self.held_back_s = None if wait_ms < 0 else wait_ms / 1000
        return [
            ClaimedItem(
                token=answer[i].decode(),
                list_key=answer[i + 1].decode(),
                raw=answer[i + 2],
                started=(i - 2) // 3 < marked,
            )
            for i in range(2, len(answer), 3)
        ]

    async def wait_and_claim(
        self, list_keys: list[str], count: int, timeout_s: float, *, start_now: int = 0
    ) -> tuple[bool, list[ClaimedItem]]:
        """Block until a producer signals work (or ``timeout_s``), then claim, in one round
        trip: Redis runs the claim the moment the wait ends. Returns (signalled, items).

        Never cancel this call: a claim lost in flight would wait for its lease to expire
        (a cancelled call's id is re-sent by the next claim, which then gets its items).
        """
        count = min(count, MAX_CLAIM_ITEMS)
        async with self._call_id("claim") as call_id:
            keys = self.claim_keys(list_keys, call_id)
            args = self.claim_args(count, start_now=start_now, prune=False, list_keys=list_keys)
            # Start marks do not ride along here: the claim runs only when the wait ends.
            pipe = self.client.pipeline(transaction=False)
            pipe.brpop([self.keys.notify], timeout=max(timeout_s, 0.01))
            # EVALSHA directly: a Script in a pipeline costs an extra SCRIPT EXISTS round trip.
            pipe.evalsha(
                self.scripts.claim.sha,
                len(keys),
                *keys,
                *args,
            )
            try:
                signal, answer = await pipe.execute()
            except redis.exceptions.NoScriptError:  # server restarted: the claim did not run
                answer = await self.scripts.claim(keys=keys, args=args)
                signal = True
        return signal is not None, self._claimed(answer)

    async def ready_lists(self) -> set[str]:
        """The ready index: waiting lists that may hold items (a superset of the non-empty
        ones, but for items pushed by something other than our scripts)."""
        return {as_text(key) for key in await self.client.smembers(self.keys.ready)}

    async def wait_for_ready(self, timeout_s: float) -> tuple[bool, set[str]]:
        """Block until a producer signals work (or ``timeout_s``), then read the ready index,
        in one round trip. Returns (signalled, ready lists)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.brpop([self.keys.notify], timeout=max(timeout_s, 0.01))
        pipe.smembers(self.keys.ready)
        signal, members = await pipe.execute()
        return signal is not None, {as_text(key) for key in members}

    async def index_lists(self, list_keys: list[str]) -> int:
        """Add each of ``list_keys`` that holds items to the ready index (items pushed before
        the index existed, or by an older version); returns how many hold items and are not
        paused (a paused tier is indexed, so that a claim finds it once resumed)."""
        if not list_keys:
            return 0
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(self.keys.paused)
        for key in list_keys:
            pipe.llen(key)
        paused, *lengths = await pipe.execute()
        waiting = [key for key, length in zip(list_keys, lengths, strict=True) if length]
        if waiting:
            await self.client.sadd(self.keys.ready, *waiting)
        paused_keys = {as_text(key) for key in paused}
        return sum(1 for key in waiting if key not in paused_keys)

    async def seed_limits(self) -> int:
        """Write the config's queue limits to Redis, except those set at runtime (which win);
        returns how many changed."""
        args: list[EncodableT] = []
        for name, limits in sorted(self.config.limits.items()):
            args.extend((name, encode_limits(limits, "config")))
        if not args:
            return 0
        return int(await self.scripts.seed_limits(keys=[self.keys.limits], args=args))

    async def mark_started(self, item: ClaimedItem) -> None:
        """Record that ``item``'s processor is about to run, before it runs: only a started
        item's lease expiry counts toward the crash-loop guard. Items starting in the same
        moment share one call, or ride along with an ack or claim sent meanwhile (one round
        trip for both); a lease already lost is not marked. Raises what that call raised."""
        if not item.started:
            await self._starts.mark(item.token)

    async def ack(self, completions: list[Completion], finished_s: float) -> list[int]:
        """Finish successful runs: per item ``ACKED``, ``LOST`` (the lease was lost) or
        ``CANCELLED`` (its cancel was requested meanwhile: it ended cancelled instead)."""
        keys = [
            self.keys.inflight,
            self.keys.leases,
            self.keys.metrics,
            self.keys.redeliveries,
            self.keys.started,
        ]
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
        member = item.list_key.encode() + b"\n" + new_raw
        keys = [
            self.keys.inflight,
            self.keys.leases,
            self.keys.delayed,
            self.keys.metrics,
            self.keys.operation(operation_id),
            self.keys.redeliveries,
            self.keys.started,
            self.keys.done(operation_id),
        ]
        if dedup_key is not None and dedup_key.startswith(self.keys.dedup_prefix):
            keys.append(dedup_key)
        keys.append(self.keys.deps_outbox)  # always last (see schedule_retry.lua)
        args: list[EncodableT] = [
            item.token,
            member,
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
        answer = int(await self.scripts.schedule_retry(keys=keys, args=args))
        if answer == 2:  # ended cancelled: dependents, if any, wait in the outbox
            self.dependents_waiting = True
        return bool(answer)

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
        op_id = record["operation_id"] or ""
        has_status = bool(OPERATION_ID_PATTERN.fullmatch(op_id))
        keys = [
            self.keys.inflight,
            self.keys.leases,
            self.keys.system_errors if system_error else self.keys.failures,
            self.keys.metrics,
            self.keys.redeliveries,
            self.keys.started,
            self.keys.operation(op_id) if has_status else self.keys.finish_receipt(item.token),
            self.keys.done(op_id) if has_status else self.keys.finish_receipt(item.token),
            self.keys.deps_outbox,
        ]
        if dedup_key is not None and dedup_key.startswith(self.keys.dedup_prefix):
            keys.append(dedup_key)
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
        keys = [
            self.keys.inflight,
            self.keys.leases,
            self.keys.notify,
            self.keys.started,
            self.keys.ready,
        ]
        args: list[EncodableT] = [NOTIFY_CAP, self.keys.operation_prefix, *tokens]
        return int(await self.scripts.release(keys=keys, args=args))

    async def maintain(self, now_s: float) -> Maintenance:
        """Promote due retries (by ``now_s``) and due scheduled items (by the server's clock),
        and recover expired leases (two script calls)."""
        promoted = await self.scripts.promote_due(
            keys=[
                self.keys.delayed,
                self.keys.notify,
                self.keys.ready,
                self.keys.scheduled,
                self.keys.scheduled_counts,
            ],
            args=[to_ms(now_s), CLAIM_LIMIT, NOTIFY_CAP, self.keys.operation_prefix],
        )
        async with self._call_id("recover") as call_id:
            recovered = await self.scripts.recover(
                keys=[
                    self.keys.inflight,
                    self.keys.leases,
                    self.keys.redeliveries,
                    self.keys.notify,
                    self.keys.started,
                    self.keys.lease_sequence,
                    self.keys.claim_receipt(call_id),
                    self.keys.ready,
                ],
                args=[
                    CLAIM_LIMIT,
                    self.config.max_deliveries,
                    self.config.backup_ttl,
                    self._lease_ms,
                    self.worker_id,
                    NOTIFY_CAP,
                    self.keys.operation_prefix,
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
                self.keys.redeliveries,
                self.keys.started,
            ],
            args=[
                item.token,
                item.list_key.encode() + b"\n" + new_raw,
                to_ms(due_s),
                last_error,
                operation_id,
            ],
        )
        return bool(answer)

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
        keys = [
            self.keys.inflight,
            self.keys.leases,
            self.keys.metrics,
            self.keys.redeliveries,
            self.keys.started,
            self.keys.operation(operation_id),
            self.keys.done(operation_id),
            self.keys.deps_outbox,
        ]
        if dedup_key is not None and dedup_key.startswith(self.keys.dedup_prefix):
            keys.append(dedup_key)
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
        keys = [
            self.keys.inflight,
            self.keys.leases,
            self.keys.started,
            self.keys.redeliveries,
            self.keys.operation(operation_id),
            self.keys.done(operation_id),
            self.keys.metrics,
            self.keys.deps_outbox,
        ]
        if dedup_key is not None and dedup_key.startswith(self.keys.dedup_prefix):
            keys.append(dedup_key)
        args: list[EncodableT] = [
            item.token,
            operation_id,
            f"{self.config.clock.time():.3f}",
            record_ttl,
            self.config.backup_ttl,
        ]
        return self._ended(await self.scripts.finish_cancelled(keys=keys, args=args))

    def _ended(self, answer: Any) -> bool:
        """A finishing script's answer: 1 = done, 2 = done and its dependents await
        resolution (it went onto the deps outbox), 0 = the lease was lost."""
        if int(answer) == 2:
            self.dependents_waiting = True
        return bool(int(answer))

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


#: What ``WorkerBroker.ack`` answers per item.
LOST, ACKED, CANCELLED = 0, 1, 2


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
