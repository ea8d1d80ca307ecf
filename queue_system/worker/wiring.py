"""The parts of one ``QueueWorker`` run and how they are wired together.

``WorkerParts._wire`` builds, at each ``start()``, what the worker's loops share: the client
and its ``WorkerBroker``, the executors' thread (or process) slots, the lease keeper, the
outage policy, the hook chain, the acker, the item runner and the fetcher. The class also
declares every attribute a run has (so that none appears only in ``start``), and the three
ways a part hands an item back to the worker: forget it, release it, resolve its dependents.
"""

from __future__ import annotations

import asyncio
import logging

import redis
import redis.asyncio

from queue_system.config import QueueConfig
from queue_system.core.hooks import HookChain
from queue_system.engine.outage import RedisOutage
from queue_system.worker.acks import Acker
from queue_system.worker.call import ThreadSlots
from queue_system.worker.events import WorkerEvents
from queue_system.worker.fetch import Fetcher
from queue_system.worker.leases import LeaseKeeper
from queue_system.worker.processes import ProcessSlots
from queue_system.worker.runner import ItemRunner
from queue_system.worker.store import ClaimedItem, WorkerBroker

logger = logging.getLogger("queue_system.worker")


class WorkerParts:
    """What one worker run is made of (see ``QueueWorker`` for the settings)."""

    # Settings, from QueueWorker.__init__.
    config: QueueConfig
    worker_id: str
    executor: str
    max_workers: int
    prefetch: int
    work_timeout: float
    queues: list[str] | None
    outage_limit: float | None
    started_at: float
    _finished: asyncio.Event | None
    _failure: BaseException | None
    # The parts of one run, all created by start() (None of them exists before it).
    _client: redis.asyncio.Redis
    _broker: WorkerBroker
    _threads: ThreadSlots
    _callback_threads: ThreadSlots
    _leases: LeaseKeeper
    _ready: asyncio.Queue[ClaimedItem | None]
    _held: dict[str, ClaimedItem]
    _busy: int
    _capacity_freed: asyncio.Event
    _stopping: asyncio.Event
    _hurry: asyncio.Event
    _closing: asyncio.Event
    _running_changed: asyncio.Event
    _retire_at: float
    _outage: RedisOutage
    _acker: Acker
    _runner: ItemRunner
    _fetch: Fetcher
    hooks: HookChain  # metrics, then the config's middleware, as of start()

    def _wire(self) -> None:
        """Build a fresh set of parts for one run (called by ``start``)."""
        self._client = self.config.make_async_client()
        self._broker = WorkerBroker(self.config, self._client, self.worker_id)
        slots = ProcessSlots if self.executor == "process" else ThreadSlots
        self._threads = slots(self.max_workers, "queue-worker")
        self._callback_threads = ThreadSlots(self.max_workers, "queue-callback")
        self._leases = LeaseKeeper(self.config, self.worker_id)
        self._ready = asyncio.Queue()
        self._held = {}
        self._busy = 0
        self._capacity_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._finished = asyncio.Event()
        self._running_changed = asyncio.Event()
        self._retire_at = 0.0
        self._failure = None
        events = WorkerEvents(self.config.metrics, self.worker_id)
        self.hooks = self.config.hooks(events)  # metrics first: it sees every outcome
        self._outage = RedisOutage(
            self.worker_id,
            self.config.clock,
            give_up_after_s=self.outage_limit,
            on_error_reply=events.script_error,
        )
        self._closing = asyncio.Event()
        persist = self._outage.persist
        self._acker = Acker(
            broker=self._broker,
            persist=persist,
            clock=self.config.clock,
            hooks=self.hooks,
            # The runner is built next: look its callbacks up when one is spawned.
            spawn_callback=lambda fn, data: self._runner.spawn_callback(fn, data),
            finished=self._forget,
            worker_id=self.worker_id,
            resolve_dependents=self._resolve_dependents,
        )
        self._runner = ItemRunner(
            config=self.config,
            broker=self._broker,
            threads=self._threads,
            callback_threads=self._callback_threads,
            work_timeout=self.work_timeout,
            persist=persist,
            # A success waits for the batched ack; any other outcome is written at once.
            complete=self._acker.complete,
            release_token=self._forget,
            leases=self._leases,
            events=events,
            hooks=self.hooks,
        )
        self._fetch = Fetcher(
            config=self.config,
            broker=self._broker,
            outage=self._outage,
            leases=self._leases,
            queues=self.queues,
            capacity=self.max_workers + self.prefetch,
            executors=self.max_workers,
            # A thread still running a timed-out sync processor counts as in use.
            in_use=lambda: self._busy + self._threads.overdue,
            held=self._held,
            ready=self._ready,
            room_freed=self._capacity_freed,
            stopping=self._stopping,
            worker_id=self.worker_id,
        )

    def _forget(self, token: str) -> None:
        """The item is finished (or given back): stop tracking and renewing it."""
        self._held.pop(token, None)
        self._leases.forget((token,))
        self._capacity_freed.set()

    async def _release(self, tokens: list[str]) -> None:
        """Give leased items back to the head of their tier (fenced: lost leases are skipped)."""
        if not tokens:
            return
        self._leases.forget(tokens)
        await self._outage.persist(self._broker.release, tokens)
        for token in tokens:
            self._held.pop(token, None)

    async def _resolve_dependents(self) -> None:
        """Resolve dependents right after their dependency ended (a failure here is left to
        the maintenance tick, which reads the outbox every time)."""
        try:
            await self._runner.resolve_dependents()
        except redis.RedisError as exc:
            logger.warning(
                "worker %s: dependents not resolved yet (%s); the maintenance tick retries",
                self.worker_id,
                exc,
            )
