"""QueueWorker: claims items in priority order, runs them, and records every outcome.

One process runs these asyncio tasks:

* the fetcher claims batches while there is free capacity and, when nothing is waiting,
  blocks on the namespace's wake-up list (:mod:`queue_system.worker.fetch`);
* ``max_workers`` executors run items (async on the loop, sync in a thread each);
* the acker writes successful runs in batches (:mod:`queue_system.worker.acks`);
* the maintainer promotes due retries and returns expired leases of dead workers;
* the heartbeat publishes the worker's record; a ticker tells the lease keeper that the
  event loop is alive (and logs when a processor blocked it).
* with periodic jobs declared (``config.cron``), the cron loop enqueues each due tick once
  across all workers (:mod:`queue_system.worker.cron`).

The parts these tasks share are built at each ``start()`` in :mod:`queue_system.worker.wiring`;
the maintainer and heartbeat live in :mod:`queue_system.worker.upkeep_loops`; this module holds
the worker's life (start, run, stop) and the fetching and executing loops.

Leases are renewed from a thread of their own (:mod:`queue_system.worker.leases`). Every
loop runs supervised (:mod:`queue_system.worker.supervision`): Redis errors never end the
process, loops log, back off and resume when Redis is back; a loop that cannot resume stops
the worker and ``run()`` raises.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from queue_system.config import QueueConfig
from queue_system.core.checks import validate_queue_name
from queue_system.worker.cron import CronRunner
from queue_system.worker.store import ClaimedItem
from queue_system.worker.supervision import supervise
from queue_system.worker.upkeep_loops import UpkeepLoops

logger = logging.getLogger("queue_system.worker")

DEFAULT_GRACE_PERIOD_S = 10.0  # stop() waits this long for running items, then releases them
BURST_OUTAGE_LIMIT_S = 30.0  # a burst worker gives up after Redis is unreachable this long
SHUTDOWN_WAIT_S = 5.0  # longest wait for the background loops to end once cancelled
EXECUTORS = ("thread", "process")  # where sync processors run (see QueueWorker)


class QueueWorker(UpkeepLoops):
    """Runs queued items with ``max_workers`` concurrent executions per process.

    Args:
        config: the shared :class:`QueueConfig` (its registry says what may run).
        max_workers: items run at once.
        work_timeout: default seconds an item may run (an item's ``timeout`` overrides it).
        queues: queue names to serve; default every queue in the namespace.
        burst: return from :meth:`run` once nothing is ready: nothing waiting, nothing in
            flight (anywhere in the namespace: an expired lease comes back and runs).
        wait_scheduled: in burst mode, also wait for retries scheduled for later, and for
            items enqueued with ``delay=``/``run_at=`` (until they are due and have run);
            without it they are left for the next run.
        outage_limit: seconds Redis may stay unreachable before :meth:`run` raises
            QueueUnavailableError; default BURST_OUTAGE_LIMIT_S (30 s) in burst mode, never
            otherwise.
        grace_period: seconds :meth:`stop` waits for running items before releasing them.
        prefetch: items claimed ahead of free executors (default ``max_workers``).
        executor: where sync processors run: ``"thread"`` (default) or ``"process"``, a
            child process per slot, killed at its timeout
            (:mod:`queue_system.worker.processes`).
    """

    # The tasks of one run, created by start(); its parts are declared in WorkerParts.
    _executors: list[asyncio.Task[None]]
    _fetcher: asyncio.Task[None]
    _services: list[asyncio.Task[None]]
    _stop_task: asyncio.Task[None] | None

    def __init__(
        self,
        config: QueueConfig,
        max_workers: int = 5,
        work_timeout: float = 30.0,
        *,
        queues: list[str] | None = None,
        burst: bool = False,
        wait_scheduled: bool = False,
        outage_limit: float | None = None,
        grace_period: float = DEFAULT_GRACE_PERIOD_S,
        prefetch: int | None = None,
        executor: str = "thread",
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if not work_timeout > 0:
            raise ValueError(f"work_timeout must be > 0 seconds, got {work_timeout!r}")
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0 seconds, got {grace_period!r}")
        if outage_limit is not None and not outage_limit > 0:
            raise ValueError(f"outage_limit must be > 0 seconds or None, got {outage_limit!r}")
        if isinstance(queues, str):
            raise TypeError("queues must be a list of queue names, not a str")
        if prefetch is not None and (
            isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0
        ):
            raise ValueError(f"prefetch must be an int >= 0 or None, got {prefetch!r}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        self.executor = executor
        self.config = config
        self.max_workers = max_workers
        self.work_timeout = float(work_timeout)
        self.queues = [validate_queue_name(q) for q in queues] if queues else None
        self.burst = burst
        self.wait_scheduled = wait_scheduled
        self.outage_limit = BURST_OUTAGE_LIMIT_S if outage_limit is None and burst else outage_limit
        self.grace_period = float(grace_period)
        self.prefetch = max_workers if prefetch is None else prefetch
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running = False
        self._finished: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self.started_at = 0.0

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and the end of :meth:`stop`."""
        return self._running

    async def start(self) -> None:
        """Start processing in the background of the running event loop; returns at once."""
        if self._running:
            raise RuntimeError("worker is already running")
        self._wire()
        if self.hooks.on_startup:  # before any loop runs: nothing is claimed yet
            await self.hooks.run("on_startup", self.hooks.on_startup, self, op=None)
        self._executors = [
            asyncio.create_task(self._executor_loop(), name=f"queue-executor-{i}")
            for i in range(self.max_workers)
        ]
        self._fetcher = self._supervised("fetcher", self._fetch_loop, stoppable=True)
        self._services = [
            self._supervised("acker", lambda: self._acker.loop(self._closing)),
            self._supervised("maintainer", self._maintain_loop),
            self._supervised("heartbeat", self._heartbeat_loop),
            self._supervised("loop-ticker", self._leases.tick_loop),
            self._supervised("cancel-watch", self._runner.jobs.watch),
        ]
        if self.config.schedules:  # periodic jobs declared with config.cron()
            cron = CronRunner(config=self.config, client=self._client, worker_id=self.worker_id)
            self._services.append(
                self._supervised("cron", lambda: cron.loop(self._outage, self._closing))
            )
        self._leases.start()
        self._stop_task = None
        self.started_at = self.config.clock.time()
        self._running = True
        logger.info("worker %s started (max_workers=%d)", self.worker_id, self.max_workers)
        logger.info(
            "worker %s can run registered processors/callbacks %s and modules under %s",
            self.worker_id,
            self.config.registry.names() or "(none)",
            list(self.config.registry.allowed_modules) or "(none)",
        )

    def _supervised(
        self, name: str, body: Callable[[], Awaitable[None]], *, stoppable: bool = False
    ) -> asyncio.Task[None]:
        supervised = supervise(
            name,
            body,
            outage=self._outage,
            clock=self.config.clock,
            on_fatal=self._fail,
            stopping=self._stopping if stoppable else None,
        )
        return asyncio.create_task(supervised, name=f"queue-{name}")

    def _fail(self, exc: BaseException) -> None:
        """A loop cannot resume: stop the worker; :meth:`run` raises ``exc``."""
        if self._failure is None:
            self._failure = exc
            logger.critical("worker %s is stopping: %s", self.worker_id, exc)
        if not self._stopping.is_set():
            self._stop_task = asyncio.get_running_loop().create_task(self.stop())

    async def run(self) -> None:
        """Start, then return when stopped (or, in burst mode, when nothing is ready).

        Raises:
            WorkerLoopError: a background loop kept failing; the worker stopped.
            QueueUnavailableError: Redis stayed unreachable past ``outage_limit``.
        """
        await self.start()
        assert self._finished is not None
        await self._finished.wait()
        if self._failure is not None:
            raise self._failure

    async def stop(self, grace_period: float | None = None) -> None:
        """Take no new items, let running ones finish for ``grace_period`` seconds, and put
        everything not finished back at the head of its tier at once.

        Calling it again with ``grace_period=0`` while a stop is under way cuts the wait short
        (a second Ctrl+C): running items are released at once. An error while stopping is
        logged, the worker still closes, and :meth:`run` raises it.
        """
        if not self._running or self._stopping.is_set():
            if grace_period == 0 and self._running:
                self._hurry.set()
            if self._finished is not None:
                await self._finished.wait()
            return
        grace = self.grace_period if grace_period is None else grace_period
        # Past this, a stop-time write gives up: leased items then return on lease expiry.
        self._outage.give_up_at = (
            self.config.clock.monotonic() + grace + 2 * self.config.connection_timeout
        )
        self._stopping.set()
        try:
            await self._wind_down(grace)
        except Exception as exc:  # a bug while stopping: close anyway; unacked leases expire
            logger.exception("worker %s: error while stopping", self.worker_id)
            if self._failure is None:
                self._failure = exc
        finally:
            await self._close()

    async def _wind_down(self, grace: float) -> None:
        """Give back what has not started, let running items finish, ack, give back the rest."""
        await asyncio.gather(self._fetcher, return_exceptions=True)
        await self._release([i.token for i in self._drain_ready()])
        for _ in self._executors:
            self._ready.put_nowait(None)
        for task in await self._wait_for_executors(grace):
            task.cancel()
        await asyncio.gather(*self._executors, return_exceptions=True)
        await self._acker.flush()
        leftover = list(self._held)
        if leftover:
            await self._release(leftover)
            logger.warning("worker %s released %d unfinished items", self.worker_id, len(leftover))
        callbacks = set(self._runner.callbacks)
        if callbacks:
            await asyncio.wait(callbacks, timeout=max(grace, 1.0))

    async def _close(self) -> None:
        """End the background loops, the lease keeper and the connections; mark stopped."""
        # A cancel landing inside a redis-py call can surface as redis.TimeoutError (or be
        # swallowed while connecting); the closing event ends the loops and their sleeps anyway.
        self._closing.set()
        self._acker.wake()  # to see it
        # The heartbeat's pause waits on this event, not on closing: wake it too. (A cancel
        # that lands as asyncio.wait_for's inner wait completes is lost before Python 3.12.)
        self._running_changed.set()
        tasks = [*self._services, *self._runner.callbacks]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)
        if self.hooks.on_shutdown:
            await self.hooks.run("on_shutdown", self.hooks.on_shutdown, self, op=None)
        await asyncio.to_thread(self._leases.stop)
        await self._outage.persist(self._broker.unregister)
        self._threads.shutdown()
        self._callback_threads.shutdown()
        await self._client.aclose()
        self._running = False
        assert self._finished is not None
        self._finished.set()
        logger.info("worker %s stopped", self.worker_id)

    async def _wait_for_executors(self, grace: float) -> list[asyncio.Task[None]]:
        """Wait up to ``grace`` seconds (or until hurried) for running items; the late ones."""
        hurry = asyncio.ensure_future(self._hurry.wait())
        deadline = self.config.clock.monotonic() + grace
        pending: set[asyncio.Future[Any]] = {t for t in self._executors if not t.done()}
        try:
            while pending and not self._hurry.is_set():
                remaining = deadline - self.config.clock.monotonic()
                if remaining <= 0:
                    break
                _, pending = await asyncio.wait(
                    pending | {hurry}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(hurry)
        finally:
            hurry.cancel()
        return [t for t in self._executors if not t.done()]

    # --- fetching -----------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        await self._fetch.loop(self._burst_done if self.burst else None)
        if not self._stopping.is_set():  # the burst is over
            self._stop_task = asyncio.get_running_loop().create_task(self.stop())

    async def _burst_done(self) -> bool:
        """True once nothing is ready: nothing waiting or in flight (nor scheduled, when
        ``wait_scheduled``). Redis errors propagate: the supervisor backs off."""
        state = await self._broker.maintain(self.config.clock.time())
        self._outage.recovered("maintain")
        await self._runner.dead_letter_crash_loops(state.crash_looped)
        if await self._runner.resolve_dependents():  # released items may be waiting now
            return False
        scheduled = state.delayed if self.wait_scheduled else 0
        if state.promoted or state.requeued or scheduled or state.in_flight or self._held:
            return False
        return not await self._fetch.anything_waiting()

    def _drain_ready(self) -> list[ClaimedItem]:
        items = []
        while not self._ready.empty():
            item = self._ready.get_nowait()
            if item is not None:
                items.append(item)
        return items

    # --- executing ----------------------------------------------------------------------------

    async def _executor_loop(self) -> None:
        while True:
            item = await self._ready.get()
            if item is None:
                return
            self._busy += 1
            self._running_changed.set()
            try:
                if self._leases.may_start(item.token):
                    await self._runner.run(item)
                    if self._broker.dependents_waiting:
                        await self._resolve_dependents()
                else:
                    logger.warning(
                        "worker %s: the lease on %s may have lapsed while the event loop was "
                        "blocked; giving it back unstarted",
                        self.worker_id,
                        item.token,
                    )
                    await self._release([item.token])
            except Exception:  # the runner finishes every item; this guards the loop itself
                logger.exception("worker %s: unexpected error on %s", self.worker_id, item.token)
                self._forget(item.token)
            finally:
                self._busy -= 1
                self._running_changed.set()
                self._capacity_freed.set()
