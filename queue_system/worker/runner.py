"""ItemRunner: runs one claimed item and writes its outcome, fenced by the item's lease.

Outcomes: success (queued for the worker's batched ack), retry (delayed set), ``failures``
(retries exhausted) or ``system_errors`` (cannot be run). Writes go through the worker's
``persist`` so a Redis outage only delays them; a lost lease discards the outcome and its
callbacks. Each outcome is told to the worker's hook chain (metrics first, then the config's
middleware: :mod:`queue_system.core.hooks`); a failed run is retried or failed for good as the
item's retry rules decide (:mod:`queue_system.core.retry_rules`). Callbacks run in their own
thread pool and are retried on failure (:mod:`queue_system.worker.callbacks`).

Whatever goes wrong while finishing an item (a result or a retry that cannot be
encoded, an exception that cannot be printed) still ends it: in ``system_errors`` with its
raw bytes and the reason ``runner_error``; the item is never left leased for ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from queue_system.config import QueueConfig
from queue_system.core.clock import to_ms
from queue_system.core.envelope import dumps, encode_envelope, envelope_summary, operation_id_of
from queue_system.core.hooks import (
    HookChain,
    JobInfo,
    Outcome,
    kept_notes,
    meta_of,
    previous_notes,
)
from queue_system.core.records import (
    attempt_record,
    callback_data,
    dead_letter_record,
    describe_exception,
)
from queue_system.core.retry_rules import decide_retry
from queue_system.core.types import DeadLetter, Envelope
from queue_system.worker.call import (
    InvalidItem,
    RunnableItem,
    ThreadSlots,
    call_with_timeout,
    prepare,
)
from queue_system.worker.callbacks import Callbacks
from queue_system.worker.events import WorkerEvents, job_of
from queue_system.worker.expiry import expire_item, expired_at
from queue_system.worker.job_context import JobCancelled, RunningJobs, cancelled_data
from queue_system.worker.leases import LeaseKeeper
from queue_system.worker.skew import Wait, plan_wait
from queue_system.worker.store import ClaimedItem, Completion, WorkerBroker

logger = logging.getLogger("queue_system.worker")

RETRY_PAYLOAD_MAX_BYTES = 64 * 1024 * 1024  # re-encoding a failed item never refuses it


class Persist(Protocol):
    """Runs a Redis write until it succeeds (the worker's outage-tolerant wrapper)."""

    def __call__(self, write: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any: ...


class ItemRunner:
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
        await self.persist(self.broker.mark_started, item)  # first: a crash now must count
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

    async def _after(self, job: JobInfo, outcome: Outcome) -> None:
        """Tell the hook chain (metrics first) how one run ended."""
        await self.hooks.run(
            "after_process", self.hooks.after_process, job, outcome, op=job.operation_id
        )

    async def _dead_lettered(self, record: DeadLetter) -> None:
        if self.hooks.on_dead_letter:
            op = record["operation_id"]
            await self.hooks.run("on_dead_letter", self.hooks.on_dead_letter, record, op=op)

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

    async def _system_error(self, item: ClaimedItem, exc: InvalidItem) -> None:
        record = dead_letter_record(
            reason=exc.reason,
            error_type=type(exc.__cause__ or exc).__name__,
            message=str(exc),
            at=self.config.clock.time(),
            envelope=exc.envelope,
            raw=item.raw,
        )
        kept = await self._finish(
            item,
            self.broker.dead_letter,
            item,
            record,
            system_error=True,
            dedup_key=dedup_of(exc.envelope),
        )
        outcome = Outcome(status="system_error", exception=exc, reason=exc.reason)
        await self._after(job_of(exc.envelope), outcome)
        if kept:
            await self._dead_lettered(record)
        op_id = operation_id_of(item.raw)
        logger.error(
            "system error (%s) for operation %s: %s",
            exc.reason,
            op_id or f"<unreadable item, lease {item.token}>",
            exc,
            extra={"operation_id": op_id, "reason": exc.reason},
        )

    async def _runner_error(self, item: ClaimedItem, exc: Exception) -> None:
        """Last resort: the item could not be finished normally; system_errors, raw bytes kept."""
        message = describe_exception(exc)
        op_id = operation_id_of(item.raw)
        logger.error(
            "operation %s could not be finished (%s: %s); moving it to system_errors",
            op_id or f"<unreadable item, lease {item.token}>",
            type(exc).__name__,
            message,
            exc_info=exc,
            extra={"operation_id": op_id},
        )
        summary = envelope_summary(item.raw)
        record = dead_letter_record(
            reason="runner_error",
            error_type=type(exc).__name__,
            message=message,
            at=self.config.clock.time(),
            envelope=summary,
            raw=item.raw,
        )
        try:
            kept = await self._finish(
                item,
                self.broker.dead_letter,
                item,
                record,
                system_error=True,
                dedup_key=dedup_of(summary),
            )
        except Exception:  # even that failed: the lease runs out and recovery takes over
            logger.exception(
                "operation %s: could not record the runner error",
                op_id or f"<lease {item.token}>",
                extra={"operation_id": op_id},
            )
            self.release_token(item.token)
            return
        if kept:
            outcome = Outcome(status="system_error", exception=exc, reason="runner_error")
            await self._after(job_of(summary), outcome)
            await self._dead_lettered(record)

    async def _failed(
        self,
        item: ClaimedItem,
        runnable: RunnableItem,
        exc: BaseException,
        run_ms: int,
        wait_ms: int,
        job: JobInfo,
    ) -> None:
        env = runnable.envelope
        now = self.config.clock.time()
        failed_runs = env["attempts"] + 1
        decision = decide_retry(
            runnable.retry, exc, retries_done=env["attempts"], first_at=env["first_at"], now=now
        )
        attempt = attempt_record(exc, now, decision.rule)
        if notes := kept_notes(job.notes):
            attempt["notes"] = notes
        history = [*env.get("history", []), attempt]
        if decision.due is not None:
            await self._retry(item, env, history, failed_runs, decision.due, run_ms, wait_ms)
            logger.info(
                "operation %s failed (%s); retry %d due in %.2fs (%s)",
                env["id"],
                type(exc).__name__,
                failed_runs,
                decision.due - now,
                decision.rule,
                extra={"operation_id": env["id"]},
            )
            retried = Outcome(
                status="retried",
                exception=exc,
                duration_ms=run_ms,
                wait_ms=wait_ms,
                rule=decision.rule,
            )
            await self._after(job, retried)
            return
        final: dict[str, Any] = {**env, "attempts": failed_runs, "history": history}
        record = dead_letter_record(
            reason="failed",
            error_type=type(exc).__name__,
            message=attempt["message"],
            at=now,
            envelope=final,
            history=history,
        )
        kept = await self._finish(
            item,
            self.broker.dead_letter,
            item,
            record,
            system_error=False,
            run_ms=run_ms,
            dedup_key=env.get("dedup"),
            wait_ms=wait_ms,
        )
        failed = Outcome(
            status="failed", exception=exc, duration_ms=run_ms, wait_ms=wait_ms, rule=decision.rule
        )
        await self._after(job, failed)
        logger.warning(
            "operation %s failed after %d runs (%s): %s",
            env["id"],
            failed_runs,
            decision.rule,
            attempt["message"],
            extra={"operation_id": env["id"]},
        )
        if kept:
            await self._dead_lettered(record)
        if kept and runnable.on_failure is not None:
            data = callback_data(
                env, error=attempt["message"], error_type=type(exc).__name__, history=history
            )
            data["attempts"] = failed_runs
            self.spawn_callback(runnable.on_failure, data)

    async def _retry(
        self,
        item: ClaimedItem,
        env: Envelope,
        history: list[Any],
        failed_runs: int,
        due: float,
        run_ms: int,
        wait_ms: int,
    ) -> None:
        retried: Envelope = {**env, "attempts": failed_runs, "history": history, "enqueued_at": due}
        raw = encode_envelope(retried, max_bytes=RETRY_PAYLOAD_MAX_BYTES)
        last = history[-1]
        last_error = {
            "type": last["error_type"],
            "message": last["message"],
            "traceback": last["traceback"],
        }
        await self._finish(
            item,
            self.broker.schedule_retry,
            item,
            raw,
            due,
            operation_id=env["id"],
            run_ms=run_ms,
            queue_priority=queue_priority(env),
            wait_ms=wait_ms,
            attempts=failed_runs,
            last_error=json.dumps(last_error),
            dedup_key=env.get("dedup"),
            record_ttl=self.config.result_ttl_for(env["queue"]),
        )

    async def _finish(
        self, item: ClaimedItem, write: Callable[..., Awaitable[bool]], *args: Any, **kwargs: Any
    ) -> bool:
        """Run a fenced write (retry/dead-letter) of ``item``; False when the lease was lost."""
        held = await self.persist(write, *args, **kwargs)
        self.release_token(item.token)
        op_id = operation_id_of(item.raw)
        where = {"operation_id": op_id, "lease": item.token}
        if held is None:
            logger.warning(
                "outcome of operation %s not written (Redis unreachable): its lease will expire "
                "and it will run again",
                op_id,
                extra=where,
            )
        elif not held:
            logger.warning(
                "operation %s: lease %s was lost; outcome discarded", op_id, item.token, extra=where
            )
        return bool(held)

    async def dead_letter_crash_loops(self, looped: list[tuple[ClaimedItem, int]]) -> None:
        """Move items whose lease kept expiring (they kill their worker) to system_errors."""
        for item, expiries in looped:
            summary = envelope_summary(item.raw)
            record = dead_letter_record(
                reason="crash_loop",
                error_type="CrashLoop",
                message=f"lease expired {expiries} times: the item keeps killing or stalling "
                "its worker",
                at=self.config.clock.time(),
                envelope=summary,
                raw=item.raw,
            )
            await self.persist(
                self.broker.dead_letter,
                item,
                record,
                system_error=True,
                dedup_key=dedup_of(summary),
            )
            outcome = Outcome(status="system_error", reason="crash_loop")
            await self._after(job_of(summary), outcome)
            op_id = operation_id_of(item.raw)
            logger.error(
                "operation %s moved to system_errors: crash loop",
                op_id or f"<unreadable item, lease {item.token}>",
                extra={"operation_id": op_id, "reason": "crash_loop"},
            )

    async def resolve_dependents(self) -> bool:
        """Release or fail the dependents (``depends_on``) of operations that ended; a failed
        one is told to ``on_dead_letter`` hooks and gets its ``on_failure`` callback with
        ``reason="dependency_failed"``. True if the outbox held entries (resolved here, or by
        another worker at the same time)."""
        resolution = await self.broker.resolve_dependents()
        for record in resolution.failed:
            logger.warning(
                "operation %s failed: %s",
                record.get("operation_id"),
                record.get("message"),
                extra={"operation_id": record.get("operation_id"), "reason": "dependency_failed"},
            )
            await self._dead_lettered(record)  # type: ignore[arg-type]
            envelope = record.get("envelope") or {}
            name = envelope.get("on_failure")
            if not name or "id" not in envelope:
                continue
            try:
                on_failure = self.config.registry.resolve(name)
            except Exception:  # an unknown callback must not stop the resolution of others
                logger.exception("operation %s: on_failure %r not found", envelope["id"], name)
                continue
            data = callback_data(
                envelope,  # type: ignore[arg-type]
                reason="dependency_failed",
                error=record.get("message"),
                error_type="DependencyFailed",
                dependency_id=record.get("dependency_id"),
                dependency_status=record.get("dependency_status"),
                history=[],
            )
            self.spawn_callback(on_failure, data)
        return bool(resolution.entries)

    @property
    def callbacks(self) -> set[asyncio.Task[None]]:
        """The callbacks running now (the worker's stop waits for them)."""
        return self._callbacks.tasks

    def spawn_callback(self, fn: Callable[..., Any], data: dict[str, Any]) -> None:
        """Run a callback in the background, retried while it raises (see worker.callbacks)."""
        self._callbacks.spawn(fn, data)


def queue_priority(env: Envelope) -> str:
    """The ``<queue>:<priority>`` suffix of per-queue counters."""
    return f"{env['queue']}:{env['priority']}"


def dedup_of(envelope: dict[str, Any] | None) -> str | None:
    """The dedup key an (untrusted) envelope names, if any."""
    value = (envelope or {}).get("dedup")
    return value if isinstance(value, str) else None
