"""How one item's run ends badly: a retry, a dead letter in ``failures``, or ``system_errors``.

``Outcomes`` writes any outcome fenced by the item's lease (through the worker's ``persist``,
so a Redis outage only delays it) and tells the hook chain; ``FailurePaths`` decides between a
retry and ``failures`` (:mod:`queue_system.core.retry_rules`), and moves items that cannot be
run, or could not be finished, or keep killing their worker, to ``system_errors`` with their
raw bytes. ``ItemRunner`` (:mod:`queue_system.worker.runner`) builds on both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from queue_system.config import QueueConfig
from queue_system.core.envelope import encode_envelope, envelope_summary, operation_id_of
from queue_system.core.hooks import HookChain, JobInfo, Outcome, kept_notes
from queue_system.core.records import (
    attempt_record,
    callback_data,
    dead_letter_record,
    describe_exception,
)
from queue_system.core.retry_rules import decide_retry
from queue_system.core.types import DeadLetter, Envelope
from queue_system.worker.call import InvalidItem, RunnableItem
from queue_system.worker.callbacks import Callbacks
from queue_system.worker.events import job_of
from queue_system.worker.store import ClaimedItem, WorkerBroker

logger = logging.getLogger("queue_system.worker")

RETRY_PAYLOAD_MAX_BYTES = 64 * 1024 * 1024  # re-encoding a failed item never refuses it


class Persist(Protocol):
    """Runs a Redis write until it succeeds (the worker's outage-tolerant wrapper)."""

    def __call__(self, write: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any: ...


class Outcomes:
    """Fenced outcome writes and the hooks and callbacks they trigger (set by ``ItemRunner``)."""

    config: QueueConfig
    broker: WorkerBroker
    persist: Persist
    release_token: Callable[[str], None]
    hooks: HookChain
    _callbacks: Callbacks

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

    async def _after(self, job: JobInfo, outcome: Outcome) -> None:
        """Tell the hook chain (metrics first) how one run ended."""
        await self.hooks.run(
            "after_process", self.hooks.after_process, job, outcome, op=job.operation_id
        )

    async def _dead_lettered(self, record: DeadLetter) -> None:
        if self.hooks.on_dead_letter:
            op = record["operation_id"]
            await self.hooks.run("on_dead_letter", self.hooks.on_dead_letter, record, op=op)

    def spawn_callback(self, fn: Callable[..., Any], data: dict[str, Any]) -> None:
        """Run a callback in the background, retried while it raises (see worker.callbacks)."""
        self._callbacks.spawn(fn, data)


class FailurePaths(Outcomes):
    """Retry, ``failures``, ``system_errors`` and failed dependencies."""

    def _system_record(
        self, item: ClaimedItem, *, reason: str, error_type: str, message: str, envelope: Any
    ) -> DeadLetter:
        """The ``system_errors`` record of ``item``: its raw bytes are kept."""
        return dead_letter_record(
            reason=reason,
            error_type=error_type,
            message=message,
            at=self.config.clock.time(),
            envelope=envelope,
            raw=item.raw,
        )

    def _to_system_errors(
        self, item: ClaimedItem, record: DeadLetter, envelope: dict[str, Any] | None
    ) -> Awaitable[bool]:
        """Fenced move of ``item`` to ``system_errors`` (the dedup key ``envelope`` names freed)."""
        dedup_key = dedup_of(envelope)
        return self._finish(
            item, self.broker.dead_letter, item, record, system_error=True, dedup_key=dedup_key
        )

    async def _system_error(self, item: ClaimedItem, exc: InvalidItem) -> None:
        record = self._system_record(
            item,
            reason=exc.reason,
            error_type=type(exc.__cause__ or exc).__name__,
            message=str(exc),
            envelope=exc.envelope,
        )
        kept = await self._to_system_errors(item, record, exc.envelope)
        outcome = Outcome(status="system_error", exception=exc, reason=exc.reason)
        await self._after(job_of(exc.envelope), outcome)
        if kept:
            await self._dead_lettered(record)
        op_id = operation_id_of(item.raw)
        logger.error(
            "system error (%s) for operation %s: %s",
            exc.reason,
            op_id or unreadable(item),
            exc,
            extra={"operation_id": op_id, "reason": exc.reason},
        )

    async def _runner_error(self, item: ClaimedItem, exc: Exception) -> None:
        """Last resort: the item could not be finished normally; system_errors, raw bytes kept."""
        message = describe_exception(exc)
        op_id = operation_id_of(item.raw)
        logger.error(
            "operation %s could not be finished (%s: %s); moving it to system_errors",
            op_id or unreadable(item),
            type(exc).__name__,
            message,
            exc_info=exc,
            extra={"operation_id": op_id},
        )
        summary = envelope_summary(item.raw)
        record = self._system_record(
            item,
            reason="runner_error",
            error_type=type(exc).__name__,
            message=message,
            envelope=summary,
        )
        try:
            kept = await self._to_system_errors(item, record, summary)
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

    async def dead_letter_crash_loops(self, looped: list[tuple[ClaimedItem, int]]) -> None:
        """Move items whose lease kept expiring (they kill their worker) to system_errors."""
        for item, expiries in looped:
            summary = envelope_summary(item.raw)
            record = self._system_record(
                item,
                reason="crash_loop",
                error_type="CrashLoop",
                message=f"lease expired {expiries} times: the item keeps killing or stalling "
                "its worker",
                envelope=summary,
            )
            # persist, not _finish: a recovered item's lease is no token this worker tracks.
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
                op_id or unreadable(item),
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


def queue_priority(env: Envelope) -> str:
    """The ``<queue>:<priority>`` suffix of per-queue counters."""
    return f"{env['queue']}:{env['priority']}"


def dedup_of(envelope: dict[str, Any] | None) -> str | None:
    """The dedup key an (untrusted) envelope names, if any."""
    value = (envelope or {}).get("dedup")
    return value if isinstance(value, str) else None


def unreadable(item: ClaimedItem) -> str:
    """How logs name an item whose operation id cannot be read: by its lease."""
    return f"<unreadable item, lease {item.token}>"
