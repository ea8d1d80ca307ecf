"""LeaseKeeper: renews this worker's leases from a thread and a connection of its own.

Renewal must not depend on the event loop: a processor that blocks the loop (``time.sleep``
in an ``async def``) would otherwise stop renewal, its lease would expire and a second worker
would run the same job while the first one still runs it. So a thread renews, with its own
connection (and its own small event loop for it), the leases this worker holds:

* every ``lease_timeout / 3``, counted from the last renewal that succeeded; after a failure
  again on the outage backoff (50 ms doubling), never a whole interval later;
* a running item until its own deadline: its start + its timeout + one interval. Past it (a
  hung processor, a loop blocked for ever) the lease expires and another worker reclaims it;
* an item that is not running (claimed ahead, waiting for a thread, finished and waiting
  for its outcome to be written) only while the event loop answers: a stalled loop can
  neither start nor finish it, so it must not keep it from other workers.

The event loop reports that it is alive with :meth:`LeaseKeeper.tick_loop`, which also logs
when the loop was blocked for more than a second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from queue_system.config import QueueConfig
from queue_system.engine.outage import BACKOFF_MIN_S, Backoff
from queue_system.worker.store import WorkerBroker

logger = logging.getLogger("queue_system.worker")

LOOP_TICK_MAX_S = 0.25  # the event loop reports that it is alive at least this often
LOOP_LAG_WARN_S = 1.0  # a loop stalled longer than this is logged (a blocking processor)
STOP_WAIT_S = 5.0  # longest wait for the keeper's thread to end on stop()
RENEW_TIMEOUT_MIN_S = 0.2  # a renewal waits at least this long for its reply (short leases)


@dataclass(kw_only=True)
class _Lease:
    confirmed_at: float  # monotonic time of the claim, or of the last renewal that held it
    renew_until: float | None = None  # a running item's deadline (+ one interval)


class LeaseKeeper:
    """Renews one worker's leases in a background thread.

    The worker reports each item's life: :meth:`claimed`, :meth:`running` (from any
    thread), :meth:`ran`, :meth:`forget`. Everything else happens in the keeper's thread.
    """

    def __init__(self, config: QueueConfig, worker_id: str) -> None:
        self.config = config
        self.worker_id = worker_id
        self.interval_s = config.lease_timeout / 3
        self.tick_s = min(LOOP_TICK_MAX_S, self.interval_s / 4)
        self._clock = config.clock
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._loop_alive_at = self._clock.monotonic()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the worker's side ----------------------------------------------------------------

    def claimed(self, tokens: Iterable[str]) -> None:
        """These leases were just taken (a claim): keep them while the loop answers."""
        now = self._clock.monotonic()
        with self._lock:
            for token in tokens:
                self._leases[token] = _Lease(confirmed_at=now)

    def running(self, token: str, timeout_s: float) -> None:
        """The item's processor starts now: keep its lease until its own deadline."""
        until = self._clock.monotonic() + timeout_s + self.interval_s
        with self._lock:
            lease = self._leases.get(token)
            if lease is not None:
                lease.renew_until = until

    def ran(self, token: str) -> None:
        """The processor returned (or gave up): keep the lease while the loop records it."""
        with self._lock:
            lease = self._leases.get(token)
            if lease is not None:
                lease.renew_until = None

    def forget(self, tokens: Iterable[str]) -> None:
        """These items are finished or given back: stop renewing them."""
        with self._lock:
            for token in tokens:
                self._leases.pop(token, None)

    def may_start(self, token: str) -> bool:
        """False if the lease may have lapsed (it was not renewed while the loop stalled)."""
        with self._lock:
            lease = self._leases.get(token)
            if lease is None:
                return False
            age = self._clock.monotonic() - lease.confirmed_at
        return age < self.config.lease_timeout - self.interval_s

    async def tick_loop(self) -> None:
        """Run on the worker's event loop: report it alive, and log when it was blocked."""
        while True:
            before = self._clock.monotonic()
            await asyncio.sleep(self.tick_s)
            now = self._clock.monotonic()
            self._loop_alive_at = now
            lag = now - before - self.tick_s
            if lag > LOOP_LAG_WARN_S:
                logger.warning(
                    "worker %s: the event loop was blocked for %.1fs; an async processor is "
                    "doing blocking work (make it a plain def to run it in a thread)",
                    self.worker_id,
                    lag,
                )

    def start(self) -> None:
        """Start renewing in a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"queue-lease-keeper-{self.worker_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (bounded wait for the thread); leases still held then expire."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT_S)

    # --- the keeper's thread --------------------------------------------------------------

    def _due(self, now: float) -> list[str]:
        loop_alive = now - self._loop_alive_at < self.interval_s
        due, expired = [], []
        with self._lock:
            for token, lease in self._leases.items():
                if lease.renew_until is None:
                    if loop_alive:
                        due.append(token)
                elif now < lease.renew_until:
                    due.append(token)
                else:
                    expired.append(token)
            for token in expired:  # logged once: the lease then runs out
                del self._leases[token]
        for token in expired:
            logger.error(
                "worker %s: item %s is still running past its timeout (its processor, or "
                "the event loop, is stuck); its lease is no longer renewed, so another worker "
                "will take it over",
                self.worker_id,
                token,
            )
        return due

    def _confirm(self, tokens: list[str], lost: list[str], sent_at: float) -> None:
        gone = set(lost)
        with self._lock:
            for token in tokens:
                if token in gone:
                    self._leases.pop(token, None)
                else:
                    lease = self._leases.get(token)
                    if lease is not None:
                        lease.confirmed_at = sent_at
        for token in lost:  # also an item acked meanwhile: its ack reports a real loss
            logger.info("worker %s: lease %s is no longer held", self.worker_id, token)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._keep())
        except Exception:  # never silently: the leases then run out and items are reclaimed
            logger.exception("worker %s: lease renewal stopped", self.worker_id)
        finally:
            loop.close()

    async def _keep(self) -> None:
        # A stuck renewal must give up (and be retried) well within the lease.
        client = self.config.make_async_client(
            socket_timeout=min(
                self.config.connection_timeout, max(self.interval_s / 2, RENEW_TIMEOUT_MIN_S)
            )
        )
        broker = WorkerBroker(self.config, client, self.worker_id)
        backoff = Backoff(BACKOFF_MIN_S, max(BACKOFF_MIN_S, self.interval_s / 2))
        failing = False
        next_at = self._clock.monotonic() + self.interval_s
        try:
            # The wait blocks this thread's own loop on purpose: nothing else runs on it.
            while not self._stopping.wait(max(0.0, next_at - self._clock.monotonic())):
                sent_at = self._clock.monotonic()
                tokens = self._due(sent_at)
                if not tokens:  # a lease taken meanwhile still has 3 intervals to run
                    next_at = sent_at + self.interval_s
                    continue
                try:
                    lost = await broker.renew(tokens)
                except Exception as exc:  # Redis trouble (or a bug): retry soon, never stop
                    if not failing:
                        logger.error(
                            "worker %s: lease renewal failed (%s); retrying", self.worker_id, exc
                        )
                    failing = True
                    next_at = self._clock.monotonic() + backoff.next()
                    continue
                if failing:
                    logger.warning("worker %s: lease renewal works again", self.worker_id)
                    failing = False
                backoff.reset()
                next_at = sent_at + self.interval_s
                self._confirm(tokens, lost, sent_at)
        finally:
            await client.aclose()
