"""Fetcher: claims items for one worker while it has room, in strict priority order.

Claim + lease is one script. When nothing is claimable the fetcher blocks on the namespace's
wake-up list and claims in the same round trip (no polling sleep). In burst mode it decides
when the run is over: nothing waiting and nothing in flight (nor scheduled, with
``wait_scheduled``). Redis errors of a claim are backed off here; any other error ends
:meth:`Fetcher.loop`, whose supervisor restarts it.
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
        self._invalid_queues: set[str] = set()

    async def loop(self, burst_done: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Claim while there is room, until the worker stops.

        ``burst_done`` (burst mode) is awaited whenever nothing is claimable and nothing is
        held: the loop returns once it says True.
        """
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
                items = await self.broker.claim(
                    self.claim_keys, free, start_now=self._idle_executors()
                )
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
        """Nothing was claimable: block until work is signalled, and claim in the same trip."""
        wait_s = min(IDLE_WAIT_S, self.config.connection_timeout / 2)  # a stop waits for it
        try:
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
        """True if any served list holds an item."""
        await self.refresh_queues()
        pipe = self.broker.client.pipeline(transaction=False)
        for key in self.claim_keys:
            pipe.llen(key)
        return any(await pipe.execute()) if self.claim_keys else False

    async def refresh_queues(self) -> None:
        """Re-read the queue registry (unless the worker serves fixed queues)."""
        names = self.queues if self.queues is not None else await self._queue_names()
        self.claim_keys = self.config.keys.claim_order(names)

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
