"""QueueWorker: claims items in priority order, runs them, and records every outcome.

One process runs these asyncio tasks:

* the fetcher claims batches (claim + lease is one script) while there is free capacity and,
  when nothing is waiting, blocks on the namespace's wake-up list (no polling sleep);
* ``max_workers`` executors run items (async on the loop, sync in a thread pool);
* the acker writes successful runs in batches (one script call per batch) — fenced: an item
  whose lease another worker took over is neither acked nor followed by its callbacks;
* the renewer extends this worker's leases every third of ``lease_timeout``;
* the maintainer promotes due retries and returns expired leases of dead workers.

Redis errors never end the process: loops log, back off and resume when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import redis.asyncio

from .broker import ClaimedItem, Completion, WorkerBroker
from .clock import to_ms
from .config import QueueConfig
from .execution import (
    InvalidItem,
    RunnableItem,
    attempt_record,
    call_with_timeout,
    callback_data,
    dead_letter_record,
    prepare,
)
from .keys import validate_queue_name
from .serialization import encode_envelope, envelope_summary
from .types import Envelope

logger = logging.getLogger(__name__)

DEFAULT_GRACE_PERIOD_S = 10.0  # stop() waits this long for running items, then releases them
MAINTENANCE_INTERVAL_S = 0.5  # how often due retries are promoted and dead leases recovered
IDLE_WAIT_S = 1.0  # longest block on the wake-up list before re-checking (must be < timeouts)
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.05, 2.0  # between attempts while Redis is unreachable
RETRY_PAYLOAD_MAX_BYTES = 64 * 1024 * 1024  # re-encoding a failed item never refuses it


class QueueWorker:
    """Runs queued items with ``max_workers`` concurrent executions per process.

    Args:
        config: the shared :class:`QueueConfig` (its registry says what may run).
        max_workers: items run at once.
        work_timeout: default seconds an item may run (an item's ``timeout`` overrides it).
        queues: queue names to serve; default every queue in the namespace.
        burst: return from :meth:`run` once nothing is waiting, delayed or in flight.
        grace_period: seconds :meth:`stop` waits for running items before releasing them.
        prefetch: items claimed ahead of free executors (default ``max_workers``).
    """

    def __init__(
        self,
        config: QueueConfig,
        max_workers: int = 5,
        work_timeout: float = 30.0,
        *,
        queues: list[str] | None = None,
        burst: bool = False,
        grace_period: float = DEFAULT_GRACE_PERIOD_S,
        prefetch: int | None = None,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if not work_timeout > 0:
            raise ValueError(f"work_timeout must be > 0 seconds, got {work_timeout!r}")
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0 seconds, got {grace_period!r}")
        if isinstance(queues, str):
            raise TypeError("queues must be a list of queue names, not a str")
        self.config = config
        self.max_workers = max_workers
        self.work_timeout = float(work_timeout)
        self.queues = [validate_queue_name(q) for q in queues] if queues else None
        self.burst = burst
        self.grace_period = float(grace_period)
        self.prefetch = max_workers if prefetch is None else prefetch
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running = False
        self._finished: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and the end of :meth:`stop`."""
        return self._running

    async def start(self) -> None:
        """Start processing in the background of the running event loop; returns at once."""
        if self._running:
            raise RuntimeError("worker is already running")
        self._client = self.config.make_async_client()
        self._broker = WorkerBroker(self.config, self._client, self.worker_id)
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="queue-worker")
        self._ready: asyncio.Queue[ClaimedItem | None] = asyncio.Queue()
        self._held: dict[str, ClaimedItem] = {}
        self._busy = 0
        self._completions: list[Completion] = []
        self._after_ack: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
        self._callbacks: set[asyncio.Task[None]] = set()
        self._ack_wakeup = asyncio.Event()
        self._ack_lock = asyncio.Lock()
        self._capacity_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._claim_keys: list[str] = []
        self._outage_logged = False
        self._executors = [
            asyncio.create_task(self._executor_loop(), name=f"queue-executor-{i}")
            for i in range(self.max_workers)
        ]
        self._fetcher = asyncio.create_task(self._fetch_loop(), name="queue-fetcher")
        self._services = [
            asyncio.create_task(self._ack_loop(), name="queue-acker"),
            asyncio.create_task(self._renew_loop(), name="queue-renewer"),
            asyncio.create_task(self._maintain_loop(), name="queue-maintainer"),
        ]
        self._burst_stop: asyncio.Task[None] | None = None
        self._running = True
        logger.info("worker %s started (max_workers=%d)", self.worker_id, self.max_workers)

    async def run(self) -> None:
        """Start, then return when stopped (or, in burst mode, when the queues are empty)."""
        await self.start()
        assert self._finished is not None
        await self._finished.wait()

    async def stop(self, grace_period: float | None = None) -> None:
        """Take no new items, let running ones finish for ``grace_period`` seconds, and put
        everything not finished back at the head of its tier at once."""
        if not self._running or self._stopping.is_set():
            if self._finished is not None:
                await self._finished.wait()
            return
        grace = self.grace_period if grace_period is None else grace_period
        self._stopping.set()
        await asyncio.gather(self._fetcher, return_exceptions=True)
        buffered = self._drain_ready()
        await self._persist(self._broker.release, [i.token for i in buffered])
        for item in buffered:
            self._held.pop(item.token, None)
        for _ in self._executors:
            self._ready.put_nowait(None)
        _, late = await asyncio.wait(self._executors, timeout=grace) if grace else (set(), set())
        for task in late:
            task.cancel()
        await asyncio.gather(*self._executors, return_exceptions=True)
        await self._flush_acks()
        leftover = list(self._held)
        if leftover:
            await self._persist(self._broker.release, leftover)
            logger.warning("worker %s released %d unfinished items", self.worker_id, len(leftover))
        if self._callbacks:
            await asyncio.wait(self._callbacks, timeout=max(grace, 1.0))
        for task in [*self._services, *self._callbacks]:
            task.cancel()
        await asyncio.gather(*self._services, *self._callbacks, return_exceptions=True)
        self._pool.shutdown(wait=False)
        await self._client.aclose()
        self._running = False
        assert self._finished is not None
        self._finished.set()
        logger.info("worker %s stopped", self.worker_id)

    # --- fetching -----------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        capacity = self.max_workers + self.prefetch
        await self._refresh_queues()
        while not self._stopping.is_set():
            waiting = self._ready.qsize()
            free = capacity - waiting - self._busy
            if free <= 0 or (waiting and free < capacity // 2):
                self._capacity_freed.clear()
                await self._wait_any(self._capacity_freed.wait(), IDLE_WAIT_S)
                continue
            self._capacity_freed.clear()
            try:
                items = await self._broker.claim(self._claim_keys, free)
            except redis.RedisError as exc:
                await self._on_outage(exc)
                continue
            self._on_redis_ok()
            for item in items:
                self._held[item.token] = item
                self._ready.put_nowait(item)
            if not items:
                await self._idle()

    async def _idle(self) -> None:
        """Nothing was claimable: finish a burst, or block until work is signalled."""
        if self.burst:
            if self._held or self._busy:
                await self._wait_any(self._capacity_freed.wait(), IDLE_WAIT_S)
                return
            state = await self._broker.maintain(self.config.clock.time())
            await self._dead_letter_crash_loops(state.crash_looped)
            quiet = not (state.promoted or state.requeued or state.delayed or state.in_flight)
            if quiet and not self._held and not await self._anything_waiting():
                self._burst_stop = asyncio.get_running_loop().create_task(self.stop())
                await self._stopping.wait()
                return
        await self._wait_any(self._broker.wait_for_work(IDLE_WAIT_S), IDLE_WAIT_S + 1)
        if self.queues is None:
            await self._refresh_queues()

    async def _anything_waiting(self) -> bool:
        await self._refresh_queues()
        pipe = self._client.pipeline(transaction=False)
        for key in self._claim_keys:
            pipe.llen(key)
        return any(await pipe.execute()) if self._claim_keys else False

    async def _refresh_queues(self) -> None:
        names = self.queues if self.queues is not None else await self._broker.queue_names()
        self._claim_keys = self.config.keys.claim_order(names)

    async def _wait_any(self, awaitable: Awaitable[Any], timeout: float) -> None:
        """Wait for ``awaitable``, a stop request, or ``timeout`` seconds, whichever is first."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stop):
                if not task.done():
                    task.cancel()
            await asyncio.gather(work, stop, return_exceptions=True)
        if work.done() and not work.cancelled() and isinstance(work.exception(), redis.RedisError):
            await self._on_outage(work.exception())  # type: ignore[arg-type]

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
            try:
                await self._process(item)
            except Exception:
                logger.exception("worker %s: unexpected error on %s", self.worker_id, item.token)
            finally:
                self._busy -= 1
                self._capacity_freed.set()

    async def _process(self, item: ClaimedItem) -> None:
        clock = self.config.clock
        try:
            runnable = prepare(item.raw, self.config.registry, self.work_timeout)
        except InvalidItem as exc:
            record = dead_letter_record(
                reason=exc.reason, error_type=type(exc.__cause__ or exc).__name__,
                message=str(exc), at=clock.time(), envelope=exc.envelope, raw=item.raw,
            )  # fmt: skip
            dedup_key = _dedup_of(exc.envelope)
            await self._finish(
                item, self._broker.dead_letter, item, record, system_error=True, dedup_key=dedup_key
            )
            logger.error("system error (%s) for item %s: %s", exc.reason, item.token, exc)
            return
        env = runnable.envelope
        wait_ms = max(0, to_ms(clock.time() - env["enqueued_at"]))
        started = clock.monotonic()
        try:
            result = await call_with_timeout(
                runnable.processor, env["entity"], runnable.timeout_s, self._pool
            )
        except Exception as exc:
            if isinstance(exc, asyncio.TimeoutError):
                exc = TimeoutError(f"processor exceeded its {runnable.timeout_s}s timeout")
            await self._on_failure(item, runnable, exc, to_ms(clock.monotonic() - started), wait_ms)
            return
        run_ms = to_ms(clock.monotonic() - started)
        if runnable.on_success is not None:
            data = callback_data(env, result=result)
            self._after_ack[item.token] = (runnable.on_success, data)
        self._completions.append(
            Completion(item, env["id"], env.get("dedup"), run_ms, _queue_priority(env), wait_ms)
        )
        self._ack_wakeup.set()

    async def _on_failure(
        self, item: ClaimedItem, runnable: RunnableItem, exc: BaseException, run_ms: int,
        wait_ms: int,
    ) -> None:  # fmt: skip
        env = runnable.envelope
        now = self.config.clock.time()
        history = [*env.get("history", []), attempt_record(exc, now)]
        failed_runs = env["attempts"] + 1
        retry = runnable.retry
        qp = _queue_priority(env)
        if retry.has_attempts_left(env["attempts"]):
            due = now + retry.get_delay_for_attempt(failed_runs)
            if not retry.would_exceed_timeout(env["first_at"], due):
                retried: Envelope = {**env, "attempts": failed_runs, "history": history,
                                     "enqueued_at": due}  # fmt: skip
                raw = encode_envelope(retried, max_bytes=RETRY_PAYLOAD_MAX_BYTES)
                await self._finish(
                    item, self._broker.schedule_retry, item, raw, due, run_ms, qp, wait_ms
                )
                logger.info("operation %s failed (%s); retry %d due in %.2fs", env["id"],
                            type(exc).__name__, failed_runs, due - now)  # fmt: skip
                return
        final: dict[str, Any] = {**env, "attempts": failed_runs, "history": history}
        record = dead_letter_record(
            reason="failed", error_type=type(exc).__name__, message=str(exc) or repr(exc),
            at=now, envelope=final, history=history,
        )  # fmt: skip
        kept = await self._finish(
            item, self._broker.dead_letter, item, record, system_error=False, run_ms=run_ms,
            dedup_key=env.get("dedup"),
        )  # fmt: skip
        logger.warning("operation %s failed after %d runs: %s", env["id"], failed_runs, exc)
        if kept and runnable.on_failure is not None:
            data = callback_data(env, error=str(exc) or repr(exc), error_type=type(exc).__name__,
                                 history=history)  # fmt: skip
            data["attempts"] = failed_runs
            self._spawn_callback(runnable.on_failure, data)

    async def _finish(
        self, item: ClaimedItem, write: Callable[..., Awaitable[bool]], *args: Any, **kwargs: Any
    ) -> bool:
        """Run a fenced write (retry/dead-letter) of ``item``; False when the lease was lost."""
        held = await self._persist(write, *args, **kwargs)
        self._held.pop(item.token, None)
        if not held:
            logger.warning("worker %s lost the lease on %s; outcome discarded", self.worker_id,
                           item.token)  # fmt: skip
        return bool(held)

    async def _persist(
        self, write: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """Run ``write(*args, **kwargs)`` until Redis accepts it (an outage only delays it)."""
        while True:
            try:
                result = await write(*args, **kwargs)
            except redis.RedisError as exc:
                await self._on_outage(exc)
                continue
            self._on_redis_ok()
            return result

    def _spawn_callback(self, fn: Callable[..., Any], data: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._run_callback(fn, data))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _run_callback(self, fn: Callable[..., Any], data: dict[str, Any]) -> None:
        try:
            await call_with_timeout(fn, data, self.work_timeout, self._pool)
        except Exception:
            logger.exception("callback %s failed for operation %s",
                             getattr(fn, "__qualname__", fn), data.get("operation_id"))  # fmt: skip

    async def _dead_letter_crash_loops(self, looped: list[tuple[ClaimedItem, int]]) -> None:
        for item, expiries in looped:
            summary = envelope_summary(item.raw)
            record = dead_letter_record(
                reason="crash_loop", error_type="CrashLoop",
                message=f"lease expired {expiries} times: the item keeps killing or stalling "
                "its worker", at=self.config.clock.time(), envelope=summary, raw=item.raw,
            )  # fmt: skip
            await self._persist(
                self._broker.dead_letter, item, record, system_error=True,
                dedup_key=_dedup_of(summary),
            )  # fmt: skip
            logger.error("item %s moved to system_errors: crash loop", item.token)

    # --- acking, renewing, maintaining --------------------------------------------------------

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_wakeup.wait()
            self._ack_wakeup.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        async with self._ack_lock:
            await self._flush_acks_locked()

    async def _flush_acks_locked(self) -> None:
        while self._completions:
            batch, self._completions = self._completions, []
            results = await self._persist(self._broker.ack, batch)
            for completion, acked in zip(batch, results, strict=True):
                token = completion.item.token
                self._held.pop(token, None)
                after = self._after_ack.pop(token, None)
                if not acked:
                    logger.warning("worker %s lost the lease on %s; not acked, no callbacks",
                                   self.worker_id, token)  # fmt: skip
                elif after is not None:
                    self._spawn_callback(*after)

    async def _renew_loop(self) -> None:
        interval = self.config.lease_timeout / 3
        while True:
            await asyncio.sleep(interval)
            tokens = list(self._held)
            try:
                lost = await self._broker.renew(tokens)
            except redis.RedisError as exc:
                await self._on_outage(exc)
                continue
            for token in lost:
                logger.warning("worker %s: lease %s was taken over", self.worker_id, token)

    async def _maintain_loop(self) -> None:
        while True:
            try:
                state = await self._broker.maintain(self.config.clock.time())
                await self._dead_letter_crash_loops(state.crash_looped)
                if state.requeued:
                    logger.warning("recovered %d items from expired leases", state.requeued)
            except redis.RedisError as exc:
                await self._on_outage(exc)
                continue
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)

    async def _on_outage(self, exc: BaseException) -> None:
        if not self._outage_logged:
            logger.error("worker %s: Redis unavailable (%s); retrying", self.worker_id, exc)
            self._outage_logged = True
            self._backoff = BACKOFF_MIN_S
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _on_redis_ok(self) -> None:
        if self._outage_logged:
            logger.warning("worker %s: Redis is back", self.worker_id)
            self._outage_logged = False


def _queue_priority(env: Envelope) -> str:
    """The ``<queue>:<priority>`` suffix of per-queue counters."""
    return f"{env['queue']}:{env['priority']}"


def _dedup_of(envelope: dict[str, Any] | None) -> str | None:
    value = (envelope or {}).get("dedup")
    return value if isinstance(value, str) else None
