"""ItemRunner: runs one claimed item, from its decoding to its outcome, fenced by its lease.

Outcomes: success (queued for the worker's batched ack), cancelled, expired, deferred while no
worker knows its processor, or a failure: retried, ``failures`` or ``system_errors``, decided
and written in :mod:`queue_system.worker.failures` (whatever goes wrong while finishing an item
still ends it there, never leased for ever). Writes go through the worker's ``persist`` so a
Redis outage only delays them; a lost lease discards the outcome and its callbacks. Each
outcome is told to the worker's hook chain (metrics first, then the config's middleware:
:mod:`queue_system.core.hooks`). Callbacks run in their own thread pool and are retried on
failure (:mod:`queue_system.worker.callbacks`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from queue_system.config import QueueConfig
from queue_system.core.clock import to_ms
from queue_system.core.envelope import dumps
from queue_system.core.hooks import HookChain, JobInfo, Outcome, meta_of, previous_notes
from queue_system.core.records import callback_data, describe_exception
from queue_system.core.types import Envelope
from queue_system.worker.call import (
    InvalidItem,
    RunnableItem,
    ThreadSlots,
    call_with_timeout,
    prepare,
)
from queue_system.worker.callbacks import Callbacks
from queue_system.worker.events import WorkerEvents
from queue_system.worker.expiry import expire_item, expired_at
from queue_system.worker.failures import FailurePaths, Persist, queue_priority
from queue_system.worker.job_context import JobCancelled, RunningJobs, cancelled_data
from queue_system.worker.leases import LeaseKeeper
from queue_system.worker.skew import Wait, plan_wait
from queue_system.worker.store import ClaimedItem, Completion, WorkerBroker

logger = logging.getLogger("queue_system.worker")

__all__ = ["ItemRunner", "Persist"]  # Persist: the write wrapper's type, also for the acks


class ItemRunner(FailurePaths):
    """Runs items for one worker; the worker owns the loops, this owns one item's life.

    Args:
        config: the worker's config.
        broker: its script calls.
        threads: threads for sync processors; ``callback_threads`` for sync callbacks.
        work_timeout: default seconds an item may run.
        persist: the worker's outage-tolerant write wrapper.
        complete: queues a successful run for the batched ack.
        release_token: the worker stops tracking a finished item.
        leases: told when a processor starts (from its thread) and when it returned.
        events: metric updates (the first middleware of ``hooks``).
        hooks: the worker's hook chain; default: ``events`` then the config's middleware.
    """

    def __init__(
        self,
        *,
        config: QueueConfig,
        broker: WorkerBroker,
        threads: ThreadSlots,
        callback_threads: ThreadSlots,
        work_timeout: float,
        persist: Persist,
        complete: Callable[[Completion, Callable[..., Any] | None, dict[str, Any]], None],
        release_token: Callable[[str], None],
        leases: LeaseKeeper,
        events: WorkerEvents,
        hooks: HookChain | None = None,
    ) -> None:
        self.config = config
        self.broker = broker
        self.threads = threads
        self.work_timeout = work_timeout
        self.persist = persist
        self.complete = complete
        self.release_token = release_token
        self.leases = leases
        self.events = events
        self.hooks = hooks or config.hooks(events)
        self._callbacks = Callbacks(
            config=config, threads=callback_threads, work_timeout=work_timeout
        )
        self.jobs = RunningJobs(broker)  # job context, cancel requests, progress

    async def run(self, item: ClaimedItem) -> None:
        """Decode, resolve and run ``item``, then record its outcome (whatever happens)."""
        try:
            await self._run(item)
        except asyncio.CancelledError:
            raise  # the worker's stop; processors' own cancellations arrive as failures
        except Exception as exc:
            await self._runner_error(item, exc)

    async def _run(self, item: ClaimedItem) -> None:
        clock = self.config.clock
        try:
            runnable = prepare(item.raw, self.config.registry, self.work_timeout)
        except InvalidItem as exc:
            if exc.reason == "unknown_processor":  # deploy skew: wait for a worker that knows it
                plan = plan_wait(exc, clock.time(), self.config.unknown_processor_ttl)
                if isinstance(plan, Wait):
                    await self._wait_for_deploy(item, plan)
                    return
                exc = plan
            await self._system_error(item, exc)
            return
        env = runnable.envelope
        now = clock.time()
        if (expires_at := expired_at(env, now)) is not None:  # checked before it starts
            expired = await expire_item(
                item=item,
                runnable=runnable,
                expires_at=expires_at,
                now_s=now,
                broker=self.broker,
                finish=self._finish,
                spawn_callback=self.spawn_callback,
            )
            if expired:
                await self._after(self._job_info(env), Outcome(status="expired", reason="expired"))
            return
        env.pop("unknown_since", None)  # it runs here: a later retry gets a whole new wait
        wait_ms = max(0, to_ms(clock.time() - env["enqueued_at"]))
        if not item.started:  # the claim marked it otherwise
            await self.persist(self.broker.mark_started, item)  # first: a crash now must count
        # The DEBUG records' extras are built only when DEBUG is on (a dict per item, per record).
        debug = logger.isEnabledFor(logging.DEBUG)
        job: dict[str, Any] = {}
        if debug:
            job = {"operation_id": env["id"], "processor": env["processor"], "queue": env["queue"]}
            logger.debug("operation %s started (%s)", env["id"], env["processor"], extra=job)
        info = self._job_info(env)
        if self.hooks.before_process:
            await self.hooks.run("before_process", self.hooks.before_process, info, op=env["id"])
        started = clock.monotonic()
        try:
            result = await self.jobs.call(
                item,
                env,
                timeout_s=runnable.timeout_s,
                is_async=self.jobs.is_async(runnable.processor),
                run=lambda: call_with_timeout(
                    runnable.processor,
                    env["entity"],
                    runnable.timeout_s,
                    self.threads,
                    on_start=lambda: self.leases.running(item.token, runnable.timeout_s),
                ),
            )
        except JobCancelled:
            self.leases.ran(item.token)
            await self._cancelled(item, runnable)
            return
        except Exception as exc:
            self.leases.ran(item.token)
            run_ms = to_ms(clock.monotonic() - started)
            if debug:
                logger.debug(
                    "operation %s raised %s after %d ms",
                    env["id"],
                    type(exc).__name__,
                    run_ms,
                    extra={**job, "duration_ms": run_ms},
                )
            await self._failed(item, runnable, exc, run_ms, wait_ms, info)
            return
        self.leases.ran(item.token)
        run_ms = to_ms(clock.monotonic() - started)
        if debug:
            logger.debug(
                "operation %s succeeded in %d ms",
                env["id"],
                run_ms,
                extra={**job, "duration_ms": run_ms},
            )
        completion = Completion(
            item=item,
            operation_id=env["id"],
            dedup_key=env.get("dedup"),
            run_ms=run_ms,
            queue_priority=queue_priority(env),
            wait_ms=wait_ms,
            result_json=self._result_json(result, env["queue"]),
            result_ttl=self.config.result_ttl_for(env["queue"]),
            processor=env["processor"],
            job=info,
            on_cancelled=(runnable.on_failure, cancelled_data(env))
            if runnable.on_failure
            else None,
        )
        data = callback_data(env, result=result) if runnable.on_success else {}
        self.complete(completion, runnable.on_success, data)

    @staticmethod
    def _job_info(env: Envelope) -> JobInfo:
        """What hooks see of a decoded item."""
        return JobInfo(
            operation_id=env["id"],
            queue=env["queue"],
            priority=env["priority"],
            processor=env["processor"],
            attempt=env["attempts"] + 1,
            entity=env["entity"],
            meta=meta_of(env),
            notes={},
            previous=previous_notes(env),
        )

    def _result_json(self, result: Any, queue: str) -> str:
        """The result as stored in the status record: "" (read as None) when not kept."""
        if not self.config.keep_results_for(queue):
            return ""
        try:
            text = dumps(result)
            # Measured in bytes, and encoded here: a str Redis cannot take (a lone surrogate)
            # is a UnicodeEncodeError (a ValueError) now, not a failed ack batch later.
            size = len(text.encode())
        except Exception as exc:  # not JSON, NaN, too deep (RecursionError), a bad default
            return json.dumps(
                {"unserializable": type(result).__name__, "error": describe_exception(exc)}
            )
        if size > self.config.max_result_bytes:
            return json.dumps({"truncated": True, "size": size})
        return text

    async def _cancelled(self, item: ClaimedItem, runnable: RunnableItem) -> None:
        """End an item whose cancel was requested (fenced); ``on_failure`` gets the reason
        ``"cancelled"``. Never retried."""
        env = runnable.envelope
        kept = await self._finish(
            item,
            self.broker.finish_cancelled,
            item,
            operation_id=env["id"],
            dedup_key=env.get("dedup"),
            record_ttl=self.config.result_ttl_for(env["queue"]),
        )
        logger.info("operation %s cancelled", env["id"], extra={"operation_id": env["id"]})
        if not kept:
            return
        cancelled = Outcome(status="cancelled", reason="cancelled")
        await self._after(self._job_info(env), cancelled)
        if runnable.on_failure is not None:
            self.spawn_callback(runnable.on_failure, cancelled_data(env))

    async def _wait_for_deploy(self, item: ClaimedItem, wait: Wait) -> None:
        deferred = await self._finish(
            item,
            self.broker.defer,
            item,
            wait.raw,
            wait.due_s,
            operation_id=wait.operation_id,
            last_error=wait.last_error,
        )
        if deferred:  # loud once per item, quiet on each later look
            log = logger.warning if wait.first_sight else logger.debug
            log(
                "operation %s waits for a worker that knows its processor: %s",
                wait.operation_id,
                wait.last_error,
            )

    @property
    def callbacks(self) -> set[asyncio.Task[None]]:
        """The callbacks running now (the worker's stop waits for them)."""
        return self._callbacks.tasks
