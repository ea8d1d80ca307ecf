"""QueueManager: the synchronous producer API (enqueue, enqueue_batch, status, purge)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from queue_system.config import QueueConfig
from queue_system.core import types
from queue_system.engine.plans import Plan, run_sync
from queue_system.engine.scripts import Scripts
from queue_system.ops import job_control, reads
from queue_system.ops.health import system_health
from queue_system.producer import log_context as logged
from queue_system.producer.hooks import before_enqueue_sync
from queue_system.producer.plan import draft_enqueue_batch
from queue_system.producer.purge import PurgeProgress
from queue_system.producer.shell import enqueue_call, redis_errors, signature_of
from queue_system.resilience import try_catch

T = TypeVar("T")


class QueueManager:
    """Puts work on queues from ordinary (sync) code. For asyncio code use AsyncQueueManager.

    Every method either completes in Redis or raises: once ``enqueue`` returns, the item is
    stored. A call whose reply was lost is sent again (a reconnect, then the guard's retries)
    and stores nothing twice. Redis being unreachable raises ``QueueUnavailableError``; bad
    arguments raise ``ValueError``/``TypeError`` before anything is written. A method that
    raises logs the failure first on ``queue_system.producer.sync``, with the method, queue,
    priority and operation id (never the entity), as the reference's ``@try_catch`` does: at
    ERROR with the traceback, or bad arguments as one WARNING line.
    """

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self._client = config.redis_client
        self._scripts = config.durable(Scripts.register(self._client))
        self._guard = config.guard

    @try_catch(context=logged.enqueue_context, caller_errors=logged.CALLER_ERRORS)
    @signature_of(enqueue_call)
    def enqueue(self, *args: Any, **kwargs: Any) -> types.EnqueueResult:
        """Store one item for a worker to run ``processor(entity)``.

        Args:
            entity: JSON-serializable data passed to the processor.
            processor: a module-level callable (stored by name) or a registered name.
            queue_name: default: the processor's function name.
            priority: ``"high"``, ``"normal"`` or ``"low"``.
            operation_id: default: a new random id. A caller-chosen id is an idempotency key:
                while that operation's status record exists (from its enqueue until it has
                ended and its record expired: the result TTL, or ``backup_ttl`` for dead
                letters), another enqueue with the same id writes nothing and returns
                ``"duplicate"`` with ``"existing_status"``.
            retry_config: default ``QueueRetryConfig()`` (5 retries, exponential).
            on_success / on_failure: callables or names, called with a data dict.
            timeout: seconds the processor may run (default: the worker's ``work_timeout``).
            deduplication_key: while an item with this key is queued or running, further
                enqueues write nothing and return its id (``True``: key on the entity hash).
            custom_serializer: ``json.dumps`` ``default=`` hook for types JSON lacks.
            delay: run it no sooner than this many seconds (or a timedelta) from now, counted
                on the Redis server's clock. Until then it waits in the scheduled set with
                status ``scheduled`` and ``next_run_at``, holding its dedup key.
            run_at: run it no sooner than this timezone-aware datetime (instead of ``delay``).
            expires: seconds (or a timedelta) from now on this process's clock, or an aware
                datetime: an item not started by then is never run; it ends as ``expired``
                and its ``on_failure`` callback runs with ``reason="expired"``.
            depends_on: operation ids that must complete first. Until they have, the item
                waits with status ``waiting_for_dependencies`` (not on any list); then it is
                queued as given. If one ends ``failed``, ``error``, ``cancelled`` or
                ``expired``, the item goes to ``failures`` with reason ``dependency_failed``
                (the record names the dependency and its status), and items depending on it
                fail in turn. Not combinable with ``delay``/``run_at``/``deduplication_key``.
            on_dependency_failure: ``"run"`` queues the item anyway once every dependency
                has ended, however it ended (default ``"fail"``).

        Returns:
            ``{"operation_id", "status": "queued" | "duplicate", "queue_name", "priority"}``.
            A duplicate names the operation it duplicates: the holder of the dedup key, or
            this ``operation_id``, then with ``"existing_status"`` (``pending``,
            ``scheduled``, ``processing``, ``completed``, ``failed``, ``error`` or
            ``expired``).

        Raises:
            ValueError: both ``delay`` and ``run_at``, a negative delay, a naive datetime,
                or ``expires`` not after the due time; a ``depends_on`` id that is unknown
                (never enqueued, or its record expired; nothing is stored).
            QueueUnavailableError: Redis did not answer, even after retries. The item may have
                been stored (a reply lost for good): enqueue again with the same caller-chosen
                ``operation_id`` to find out without storing it twice.
        """
        request = enqueue_call(self.config, *args, **kwargs)
        call = request.script_call(before_enqueue_sync(self.config.hooks(), request.draft))
        with redis_errors(), call.errors:
            script = getattr(self._scripts, call.script)
            answer = self._guard.call(script, keys=call.keys, args=call.args)
        return call.read(answer)

    @try_catch(context=logged.enqueue_batch_context, caller_errors=logged.CALLER_ERRORS)
    def enqueue_batch(
        self, entities: Sequence[Any], processor: types.CallableRef, **kwargs: Any
    ) -> list[types.EnqueueResult]:
        """Enqueue many entities in one atomic round trip; same options as :meth:`enqueue`.

        ``deduplication_key=True`` deduplicates each entity by its hash; a single string key
        would make every entity after the first a duplicate, so it is refused.
        ``operation_ids=[...]`` (one per entity, None for a random one) are idempotency keys as
        in :meth:`enqueue`; an id given twice in one batch stores its first entity only.
        """
        started = self.config.clock.monotonic()
        draft = draft_enqueue_batch(self.config, entities, processor, **kwargs)
        if draft is None:
            return []
        plan = before_enqueue_sync(self.config.hooks(), draft)
        with redis_errors():
            answer = self._guard.call(self._scripts.enqueue, keys=plan.keys, args=plan.args)
        return plan.interpret(answer, self.config, started)

    @try_catch(caller_errors=logged.CALLER_ERRORS)
    def get_queue_status(self) -> types.QueueStatus:
        """Depth of every registered queue and tier, plus failures, system errors, in-flight
        and delayed counts, keyed by Redis key: ``{"queue:high:process_data": 5, ...}``."""
        return self._read(lambda: reads.read_queue_status(self.config.keys))

    @try_catch(context=logged.operation_context, caller_errors=logged.CALLER_ERRORS)
    def get_operation(self, operation_id: str) -> types.OperationInfo | None:
        """Status of one operation, or None if the id is unknown or its record expired.

        Returns ``operation_id``, ``status`` (pending | scheduled | processing | completed |
        failed | error | cancelled | expired | waiting_for_dependencies), ``queue_name``,
        ``priority``, ``processor``, ``attempts``,
        ``enqueued_at``/``started_at``/``finished_at``/``next_run_at`` (ISO 8601 UTC),
        ``worker``, ``last_error``, ``result``, ``progress`` (what the processor reported with
        ``current_job().update_progress``), ``cancel_requested_at`` (a cancel asked while it
        ran) and, while pending, ``position``: items that
        will be taken before it (its queue's higher tiers counted). Finding the position reads
        the tier from its taking end inside Redis: O(position), about 7 ms per 10,000 items
        ahead (measured: 0.4 ms at position 0, 70 ms at position 99,999), blocking Redis
        meanwhile.
        """
        return self._read(lambda: reads.read_operation(self.config.keys, operation_id))

    def get_system_health(self) -> types.HealthSnapshot:
        """Redis reachability, per-queue depths and ages, workers, server version and memory.

        Answers within ``connection_timeout`` + 1 s even when Redis is down or frozen, with
        ``redis_connected: False``; it never raises for that. Same as
        :meth:`queue_system.QueueAdmin.get_system_health`.
        """
        return system_health(self.config)

    @try_catch(caller_errors=logged.CALLER_ERRORS)
    def get_workers(self) -> list[types.WorkerInfo]:
        """Live workers (each refreshes its record every few seconds; a dead one expires)."""
        return self._read(lambda: reads.read_workers(self.config.keys))

    def _read(self, make_plan: Callable[[], Plan[T]]) -> T:
        """Run a fresh read plan under the breaker (a retry starts the plan again)."""
        with redis_errors():
            return self._guard.call(lambda: run_sync(self._client, self._scripts, make_plan()))

    @try_catch(context=logged.purge_context, caller_errors=logged.CALLER_ERRORS)
    def purge_queue(self, queue_name: str, priority: str = "normal") -> int:
        """Delete the waiting items of ``queue_name`` at ``priority``; returns how many.

        Each item goes with its status record (its id then reads as unknown) and frees its
        dedup key. The list is emptied from its taking end in chunks (at most ``PURGE_CHUNK``
        items and about ``PURGE_CHUNK_BYTES``), one short script each, so other clients are
        served between chunks (one script over 200,000 items blocked the server for over a
        second). It stops when the list is empty or once as many items as were waiting at the
        start are removed. Items that workers take meanwhile are theirs; the count misses a
        chunk whose reply was lost (the re-sent call finds those items gone).
        """
        key = self.config.get_queue_key(queue_name, priority)
        with redis_errors():
            progress = PurgeProgress(left=int(self._guard.call(self._client.llen, key)))
            while count := progress.next_read():
                items = self._guard.call(self._client.lrange, key, -count, -1)
                if not items:
                    break
                keys, args = progress.plan(self.config, key, items)
                progress.removed(int(self._guard.call(self._scripts.purge, keys=keys, args=args)))
        return progress.purged

    @try_catch(context=logged.operation_context, caller_errors=logged.CALLER_ERRORS)
    def cancel(self, operation_id: str) -> types.CancelStatus:
        """Cancel one operation; it ends with status ``cancelled`` and is never retried.

        Returns ``"cancelled"`` when it was waiting or scheduled (a retry or a delayed item):
        it was removed atomically and never runs. ``"cancelling"`` when it is running: its
        worker hears of it within milliseconds, cancels an async processor (a sync one sees
        ``current_job().cancelled``; its result is discarded) and ends it ``cancelled``, with
        ``on_failure`` called with ``reason="cancelled"``. If it completes in that same
        instant, exactly one of completed / cancelled wins (the worker's fenced finish
        decides). ``"already_finished"`` and ``"not_found"`` change nothing.
        """
        nonce = job_control.cancel_nonce()  # the same for a retry of the plan
        return self._read(lambda: job_control.cancel_operation(self.config, operation_id, nonce))

    def wait_for(self, operation_id: str, timeout: float = 30.0) -> Any:
        """Block until ``operation_id`` ends; return its result (None if results are not
        kept), or raise ``OperationFailed`` / ``OperationCancelled`` / ``OperationExpired``
        (each with ``.operation``, the status record), ``OperationNotFound``, or
        ``WaitTimeout`` after ``timeout`` seconds.

        It blocks on Redis (``BLPOP`` on the operation's done list, which the worker's
        finishing script fills only because a waiter is counted): no polling, and it returns
        within milliseconds of the end. Typical use: ``op = m.enqueue(...)["operation_id"]``
        then ``m.wait_for(op, timeout=10)``.
        """
        record = self._wait(operation_id, timeout)
        return job_control.outcome(operation_id, record, timeout)  # raises the typed outcome errors

    def _wait(self, operation_id: str, timeout: float) -> Any:
        """The record once final or at the timeout (an outcome is not a failure: only a
        Redis or argument error is logged, as by every other method)."""
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        keys = self.config.keys
        status_key, done_key = [keys.operation(operation_id)], keys.done(operation_id)
        deadline = time.monotonic() + timeout
        with redis_errors():
            record = self._guard.call(self._scripts.wait_register, keys=status_key, args=[1])
            while not job_control.is_final(record):
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # uncount this waiter, and read the record a last time
                    return self._guard.call(self._scripts.wait_register, keys=status_key, args=[-1])
                block = job_control.wait_chunk(self.config, remaining)
                if self._guard.call(self._client.blpop, [done_key], timeout=block) is not None:
                    record = self._guard.call(
                        self._scripts.wait_register, keys=status_key, args=[1]
                    )
            return record

    # Logged as wait_for's own failures (a Redis or argument error), named after it.
    _wait.__qualname__ = "QueueManager.wait_for"
    _wait = try_catch(context=logged.wait_context, caller_errors=logged.CALLER_ERRORS)(_wait)
