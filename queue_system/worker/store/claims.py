"""The claiming half of ``WorkerBroker``: lease items, find the lists that hold them, and mark
leased items started.

A claim carries a call id (see ``BrokerBase._call_id``): its re-send answers what the first
run leased. Start marks ride along with a claim (``claim.lua``) when one is sent meanwhile.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from redis.typing import EncodableT

from queue_system.core.envelope import as_text
from queue_system.core.limits import encode_limits
from queue_system.worker.start_marks import carry
from queue_system.worker.store.base import BrokerBase, ClaimedItem

# Most items one claim leases: a claim's reply and its server time grow with it, and a larger
# one only makes items wait in this worker's buffer. The script itself takes any count.
MAX_CLAIM_ITEMS = 1000


class ClaimCalls(BrokerBase):
    """Claims, the ready index and start marks."""

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
