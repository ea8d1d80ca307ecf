"""Fetcher: claims items for one worker while it has room, in strict priority order.

Claim + lease is one script. When nothing is claimable the fetcher blocks on the namespace's
wake-up list and claims in the same round trip (no polling sleep).

The claim script gets the waiting lists to pop as KEYS. With few queues that is every served
list (no extra round trip). With more than ``CLAIM_INDEX_MIN_QUEUES`` queue names, the fetcher
first reads the ready index (``KeySpace.ready``: lists that may hold items, kept by every
script that pushes) and passes only those it serves, in claim order, so a claim's cost does
not grow with idle queues. Items the index does not know (pushed before it existed, or by an
older version during a rolling deploy) are found by a sweep (LLEN of every served list) at the
worker's first maintenance pass using the index, every ``INDEX_SWEEP_S`` seconds after, and in
burst mode before the run is declared over. In burst mode it decides
when the run is over: nothing waiting and nothing in flight (nor scheduled, with
``wait_scheduled``). Redis errors of a claim are backed off here; any other error ends
:meth:`Fetcher.loop`, whose supervisor restarts it.

Paused tiers and queue limits are enforced inside the claim script. When it held items back
by a limit and claimed nothing, the next wait is shortened to when room frees: the end of
the rate window it reported, or ``LIMIT_POLL_S`` for a full concurrency cap (never longer
than ``IDLE_WAIT_S``). The loop writes the config's limits to Redis once when it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from queue_system.config import QueueConfig
from queue_system.core.checks import validate_queue_name
from queue_system.engine.outage import RedisOutage
from queue_system.worker.leases import LeaseKeeper
from queue_system.worker.store import ClaimedItem, WorkerBroker

logger = logging.getLogger("queue_system.worker")

IDLE_WAIT_S = 1.0  # longest block on the wake-up list before re-checking (must be < timeouts)
LIMIT_POLL_S = 0.05
"""How long a fetcher waits before claiming again when a concurrency cap held items back (a
slot frees when an item of that queue finishes, on any worker; a wake-up may come sooner)."""
LIMIT_MIN_WAIT_S = 0.005  # shortest wait when a rate window frees room very soon
CLAIM_INDEX_MIN_QUEUES = 32
"""Above this many served queue names, a claim reads the ready index first (one small read)
and passes only the lists that may hold items; at or below it, every list (one round trip)."""
INDEX_SWEEP_S = 30.0
"""How often a fetcher that uses the ready index re-adds every served list holding items."""


class Fetcher:
    """The claiming side of one worker (use it on the worker's event loop only).

    Args:
        config, broker, outage, leases: the worker's collaborators.
        queues: queue names to serve (None: every registered queue).
        capacity: items running plus claimed ahead, at most.
        executors: items that run at once (max_workers).
        in_use: items running now (and threads still running a timed-out processor).
        held: the worker's leased items by token (the fetcher adds what it claims).
        ready: where claimed items wait for an executor.
        room_freed: set whenever an item finishes.
        stopping: set when the worker stops; the fetcher then ends.
        worker_id: names the worker in log records.
    """

    def __init__(
        self,
        *,
        config: QueueConfig,
        broker: WorkerBroker,
        outage: RedisOutage,
        leases: LeaseKeeper,
        queues: list[str] | None,
        capacity: int,
        executors: int,
        in_use: Callable[[], int],
        held: dict[str, ClaimedItem],
        ready: asyncio.Queue[ClaimedItem | None],
        room_freed: asyncio.Event,
        stopping: asyncio.Event,
        worker_id: str,
    ) -> None:
        self.config = config
        self.broker = broker
        self.outage = outage
        self.leases = leases
        self.queues = queues
        self.capacity = capacity
        self.executors = executors
        self.in_use = in_use
        self.held = held
        self.ready = ready
        self.room_freed = room_freed
        self.stopping = stopping
        self.worker_id = worker_id
        self.claim_keys: list[str] = []
        self.use_index = False
        self._claim_rank: dict[str, int] = {}  # served list key -> its place in claim order
        self._next_sweep = 0.0  # monotonic time of the next index sweep
        self._invalid_queues: set[str] = set()

    async def loop(self, burst_done: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Claim while there is room, until the worker stops.

        ``burst_done`` (burst mode) is awaited whenever nothing is claimable and nothing is
        held: the loop returns once it says True.
        """
        await self.broker.seed_limits()  # the config's limits, unless set at runtime
        await self.refresh_queues()
        while not self.stopping.is_set():
            waiting = self.ready.qsize()
            free = self.capacity - waiting - self.in_use()
            if free <= 0 or (waiting and free < self.capacity // 2):
                self.room_freed.clear()
                await self.wait_any(self.room_freed.wait(), IDLE_WAIT_S)
                continue
            self.room_freed.clear()
            try:
                items = await self._claim(free)
            except redis.RedisError as exc:
                await self.outage.wait(exc, "claim", until=self.stopping)
                continue
            self.outage.recovered("claim")
            self._accept(items)
            if items:
                continue
            if burst_done is not None:
                if self.held:  # items still running or not yet acked (an orphaned thread
                    # of a timed-out processor does not keep a burst alive)
                    await self.wait_any(self.room_freed.wait(), IDLE_WAIT_S)
                    continue
                if await burst_done():
                    return
            await self._wait_and_claim(free)

    async def _claim(self, free: int) -> list[ClaimedItem]:
        if not self.use_index:
            return await self.broker.claim(self.claim_keys, free, start_now=self._idle_executors())
        lists = self._in_claim_order(await self.broker.ready_lists())
        return await self.broker.claim(lists, free, start_now=self._idle_executors(), prune=True)

    def _in_claim_order(self, ready: set[str]) -> list[str]:
        """The served lists among ``ready``, in strict priority order."""
        rank = self._claim_rank
        return sorted((key for key in ready if key in rank), key=rank.__getitem__)

    def _idle_executors(self) -> int:
        """Executors that will start a claimed item at once: the claim marks that many started
        (so their start costs no extra round trip)."""
        return max(0, self.executors - self.in_use() - self.ready.qsize())

    def _accept(self, items: list[ClaimedItem]) -> None:
        self.leases.claimed(item.token for item in items)
        for item in items:
            self.held[item.token] = item
            self.ready.put_nowait(item)

    async def _wait_and_claim(self, free: int) -> None:
        """Nothing was claimable: block until work is signalled, and claim in the same trip.
        Items held back by a limit shorten the wait to when room frees (bounded)."""
        wait_s = min(IDLE_WAIT_S, self.config.connection_timeout / 2)  # a stop waits for it
        held_back = self.broker.held_back_s
        if held_back is not None:
            wait_s = min(wait_s, max(held_back or LIMIT_POLL_S, LIMIT_MIN_WAIT_S))
        try:
            if self.use_index:  # wait + read the index in one trip, then claim what it names
                signalled, ready = await self.broker.wait_for_ready(wait_s)
                lists = self._in_claim_order(ready)
                items = await self.broker.claim(
                    lists, free, start_now=self._idle_executors(), prune=True
                )
            else:
                signalled, items = await self.broker.wait_and_claim(
                    self.claim_keys, free, wait_s, start_now=self._idle_executors()
                )
        except redis.RedisError as exc:
            await self.outage.wait(exc, "wait_and_claim", until=self.stopping)
            return
        self.outage.recovered("wait_and_claim")
        self._accept(items)
        if signalled and not items and self.queues is None:
            await self.refresh_queues()  # woken for a queue this worker has not seen yet

    async def anything_waiting(self) -> bool:
        """True if any served list holds an item (each such list joins the ready index, so
        that the next claim finds it)."""
        await self.refresh_queues()
        return await self.sweep_index() > 0

    async def sweep_index(self) -> int:
        """Add every served list holding items to the ready index; returns how many hold
        items. Finds items the index missed (pushed by an older version or by hand)."""
        started = self.config.clock.monotonic()
        waiting = await self.broker.index_lists(self.claim_keys)
        self._next_sweep = started + INDEX_SWEEP_S
        return waiting

    async def maybe_sweep_index(self) -> None:
        """Sweep (see :meth:`sweep_index`) when the fetcher uses the index and one is due: at
        the first maintenance pass that finds it using the index, then every
        ``INDEX_SWEEP_S``."""
        if self.use_index and self.config.clock.monotonic() >= self._next_sweep:
            await self.sweep_index()

    async def refresh_queues(self) -> None:
        """Re-read the queue registry (unless the worker serves fixed queues), and choose
        between passing every list to a claim and reading the ready index first."""
        names = self.queues if self.queues is not None else await self._queue_names()
        self.claim_keys = self.config.keys.claim_order(names)
        self._claim_rank = {key: place for place, key in enumerate(self.claim_keys)}
        self.use_index = len(names) > CLAIM_INDEX_MIN_QUEUES

    async def _queue_names(self) -> list[str]:
        """Registered queue names; an invalid member (written by hand) is skipped, logged once."""
        names = []
        for name in await self.broker.queue_names():
            try:
                names.append(validate_queue_name(name))
            except (TypeError, ValueError) as exc:
                if name not in self._invalid_queues:
                    self._invalid_queues.add(name)
                    logger.error(
                        "worker %s: skipping %r in the queue registry: %s",
                        self.worker_id,
                        name,
                        exc,
                    )
        return names

    async def wait_any(self, awaitable: Awaitable[Any], timeout: float) -> None:
        """Wait for ``awaitable``, a stop request, or ``timeout`` seconds, whichever is first."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({work, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stop):
                if not task.done():
                    task.cancel()
            await asyncio.gather(work, stop, return_exceptions=True)
