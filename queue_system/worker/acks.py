"""Acker: writes a worker's successful runs in batches, then fires their ``on_success``.

One script call per batch, fenced: an item whose lease another worker took over is neither
acked nor followed by its callback. A batch whose write gave up (the worker stopping, or
Redis unreachable past the worker's outage limit) is not acked either: the leases expire and
the items run again (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from queue_system.core.clock import Clock
from queue_system.core.hooks import HookChain, JobInfo, Outcome
from queue_system.worker.runner import Persist
from queue_system.worker.store import CANCELLED, Completion, WorkerBroker

logger = logging.getLogger("queue_system.worker")

AfterAck = tuple[Callable[..., Any], dict[str, Any]]  # an on_success callback and its data


class Acker:
    """Batches one worker's successful runs (use it on the worker's event loop only).

    Args:
        broker: the worker's script calls.
        persist: the worker's outage-tolerant write wrapper (None when it gave up).
        clock: the worker's clock (finish times).
        hooks: the worker's hook chain (metrics first): told of each acked run.
        spawn_callback: runs an ``on_success`` callback in the background.
        finished: the worker stops tracking an item (acked or not).
        worker_id: names the worker in log records.
    """

    def __init__(
        self,
        *,
        broker: WorkerBroker,
        persist: Persist,
        clock: Clock,
        hooks: HookChain,
        spawn_callback: Callable[[Callable[..., Any], dict[str, Any]], None],
        finished: Callable[[str], None],
        worker_id: str,
        resolve_dependents: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.broker = broker
        self.persist = persist
        self.clock = clock
        self.hooks = hooks
        self.spawn_callback = spawn_callback
        self.finished = finished
        self.worker_id = worker_id
        #: Runs when an ack batch ended operations that others depend on (``depends_on``).
        self.resolve_dependents = resolve_dependents
        self._completions: list[Completion] = []
        self._after_ack: dict[str, AfterAck] = {}
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def complete(
        self, completion: Completion, on_success: Callable[..., Any] | None, data: dict[str, Any]
    ) -> None:
        """Queue a successful run for the next batch (its callback fires after the ack)."""
        if on_success is not None:
            self._after_ack[completion.item.token] = (on_success, data)
        self._completions.append(completion)
        self._wakeup.set()

    def wake(self) -> None:
        """Wake :meth:`loop` (to see that the worker is closing)."""
        self._wakeup.set()

    async def loop(self, closing: asyncio.Event) -> None:
        """Write batches as runs complete, until ``closing`` is set."""
        while not closing.is_set():
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every completed run now."""
        async with self._lock:
            while self._completions:
                batch, self._completions = self._completions, []
                await self._write(batch)

    async def _write(self, batch: list[Completion]) -> None:
        results = await self.persist(self.broker.ack, batch, self.clock.time())
        gave_up = results is None
        if gave_up:
            results = [False] * len(batch)
        succeeded: list[tuple[JobInfo, Outcome]] = []
        for completion, acked in zip(batch, results, strict=True):
            token = completion.item.token
            self.finished(token)
            after = self._after_ack.pop(token, None)
            if acked == CANCELLED:  # cancelled while it ran: its result is discarded
                if completion.on_cancelled is not None:
                    self.spawn_callback(*completion.on_cancelled)
                job, _ = _succeeded(completion)
                cancelled = Outcome(status="cancelled", reason="cancelled")
                await self.hooks.run(
                    "after_process", self.hooks.after_process, job, cancelled, op=job.operation_id
                )
            elif acked:
                succeeded.append(_succeeded(completion))
                if after is not None:
                    self.spawn_callback(*after)
            elif not gave_up:
                logger.warning(
                    "worker %s lost the lease on %s; not acked, no callbacks", self.worker_id, token
                )
        if succeeded:
            await self.hooks.run_after_batch(succeeded)
        if self.broker.dependents_waiting and self.resolve_dependents is not None:
            await self.resolve_dependents()


def _succeeded(completion: Completion) -> tuple[JobInfo, Outcome]:
    """What after_process hooks hear of an acked run."""
    job = completion.job
    if job is None:
        queue, _, priority = completion.queue_priority.rpartition(":")
        job = JobInfo(
            operation_id=completion.operation_id,
            queue=queue,
            priority=priority,
            processor=completion.processor,
            attempt=1,
            entity=None,
        )
    outcome = Outcome(status="succeeded", duration_ms=completion.run_ms, wait_ms=completion.wait_ms)
    return job, outcome
