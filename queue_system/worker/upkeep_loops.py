"""The worker's upkeep loops: maintenance and the heartbeat.

The maintainer promotes due retries and scheduled items, recovers expired leases of dead
workers (moving crash-looping items to ``system_errors``), resolves dependents left in the
outbox, refreshes the served queues and retires idle queue names. The heartbeat publishes the
worker's record: at once when its running count changes, at most every
``RUNNING_PUBLISH_MIN_S``, and every ``HEARTBEAT_INTERVAL_S`` otherwise.
"""

from __future__ import annotations

import logging
import os
import socket

import redis

from queue_system.core.envelope import as_text
from queue_system.engine.queue_names import RETIRE_INTERVAL_S, retire_call
from queue_system.engine.scripts import script_source
from queue_system.worker.wiring import WorkerParts

logger = logging.getLogger("queue_system.worker")

MAINTENANCE_INTERVAL_S = 0.5  # how often due retries are promoted and dead leases recovered
HEARTBEAT_INTERVAL_S = 5.0  # how often a worker refreshes its record in Redis
# A change in the running count is published at once, then at most this often: live views
# (`workers`, `monitor`) follow items within a second without a write per item.
RUNNING_PUBLISH_MIN_S = 0.25


class UpkeepLoops(WorkerParts):
    """The maintainer and heartbeat loops of ``QueueWorker``."""

    async def _maintain_loop(self) -> None:
        while not self._closing.is_set():
            now = self.config.clock.time()
            try:
                state = await self._broker.maintain(now)
                await self._runner.dead_letter_crash_loops(state.crash_looped)
                await self._runner.resolve_dependents()  # entries a dead worker left behind
                if self.queues is None:
                    await self._fetch.refresh_queues()
                await self._fetch.maybe_sweep_index()
                await self._retire_idle_queues(now)
            except redis.RedisError as exc:
                await self._outage.wait(exc, "maintain", until=self._closing)
                continue
            self._outage.recovered("maintain")
            if state.requeued:
                logger.warning("recovered %d items from expired leases", state.requeued)
            pause = MAINTENANCE_INTERVAL_S
            if state.next_due_ms is not None:  # wake for the next due retry, not later
                pause = min(pause, max(state.next_due_ms / 1000 - now, 0.005))
            await self._outage.sleep(pause, until=self._closing)

    async def _retire_idle_queues(self, now: float) -> None:
        """Every RETIRE_INTERVAL_S: note queues in use, drop names idle past backup_ttl."""
        if now < self._retire_at:
            return
        self._retire_at = now + RETIRE_INTERVAL_S
        names = await self._broker.queue_names()
        call = retire_call(self.config.keys, names, now_s=now, idle_ttl_s=self.config.backup_ttl)
        script = self._client.register_script(script_source("retire_idle_queues"))
        try:
            retired = await script(keys=call.keys, args=call.args)
        except redis.ResponseError as exc:  # e.g. a corrupt key: never stop maintenance for it
            logger.warning("worker %s: could not retire idle queues: %s", self.worker_id, exc)
            return
        if retired:
            logger.info("retired idle queue names: %s", ", ".join(map(as_text, retired)))

    async def _heartbeat_loop(self) -> None:
        while not self._closing.is_set():
            self._running_changed.clear()  # a change during the write sends another
            try:
                await self._broker.heartbeat(self.heartbeat_record(), HEARTBEAT_INTERVAL_S * 3)
            except redis.RedisError as exc:
                await self._outage.wait(exc, "heartbeat", until=self._closing)
                continue
            self._outage.recovered("heartbeat")
            await self._outage.sleep(RUNNING_PUBLISH_MIN_S, until=self._closing)
            if self._closing.is_set():
                # The close's cancel may have been swallowed by that wait (asyncio.wait_for
                # ending with the event and the cancel at once): never start the long sleep.
                return
            pause = HEARTBEAT_INTERVAL_S - RUNNING_PUBLISH_MIN_S
            await self._outage.sleep(pause, until=self._running_changed)

    def heartbeat_record(self) -> dict[str, str | int | float]:
        """What this worker publishes about itself (see ``QueueManager.get_workers``)."""
        return {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": ",".join(self.queues) if self.queues else "*",
            "concurrency": self.max_workers,
            "started_at": round(self.started_at, 3),
            "jobs_done": self._runner.events.jobs_done,
            "jobs_failed": self._runner.events.jobs_failed,
            # Items running, plus threads still running a sync processor that timed out.
            "running": self._busy + self._threads.overdue,
            "last_seen": round(self.config.clock.time(), 3),
        }
