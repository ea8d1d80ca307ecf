"""QueueAdmin: system health, and inspection, replay and purge of dead letters.

Dead letters live in two capped lists, newest first: ``failures`` (retries exhausted) and
``system_errors`` (items that could not be run). Each record is JSON (``types.DeadLetter``).
Reading one means scanning its list in chunks (:mod:`.dead_letter_scan`): O(records).

A requeue or purge removes the exact bytes of each record it read (LREM), atomically with the
push back onto the waiting list for a requeue (``lua/requeue.lua``). A record another operator
took first is simply not found, so concurrent operators never duplicate or lose an item. A pass
during which others removed records (which shifts the chunks, so some may have been skipped) is
repeated, at most ``MAX_PASSES`` times; records already seen are not parsed twice.

Example::

    admin = QueueAdmin(config)
    admin.list_dead_letters(queue="emails", error_type="TimeoutError", limit=20)
    admin.requeue(all=True, queue="emails", priority="high", dry_run=True)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from queue_system.config import NOTIFY_CAP, QueueConfig
from queue_system.core.checks import validate_priority
from queue_system.core.envelope import SCHEMA_VERSION, encode_envelope
from queue_system.core.limits import QueueLimits
from queue_system.core.records import stored_envelope
from queue_system.core.types import (
    CancelStatus,
    DeadLetter,
    DeadLetterReport,
    Envelope,
    HealthSnapshot,
    LimitInfo,
    QueueInfo,
    RunningOperation,
    ScheduledItem,
)
from queue_system.engine.plans import run_sync
from queue_system.engine.scripts import Scripts
from queue_system.errors import DecodeError, SerializationError
from queue_system.ops import limits as queue_limits
from queue_system.ops import queues, scheduled
from queue_system.ops.audit import audit, logger, operator_identity, report
from queue_system.ops.dead_letter_scan import Write, mutate, scan
from queue_system.ops.dead_letters import DeadLetterFilter, Filters, selected_ids
from queue_system.ops.health import system_health
from queue_system.ops.job_control import cancel_nonce, cancel_operation, read_running

if TYPE_CHECKING:
    from redis.commands.core import Script
    from typing_extensions import Unpack


DEFAULT_LIST_LIMIT = 100


class QueueAdmin:
    """Operations on a namespace: health, and the dead-letter lists.

    Args:
        config: the namespace and Redis connection (the same one workers use).
    """

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self._client = config.redis_client
        scripts = Scripts.register(self._client)
        self._requeue = scripts.requeue
        self._drop = scripts.drop_dead_letter

    def get_system_health(self) -> HealthSnapshot:
        """Redis, per-queue and worker figures, in seed 004's shape plus server details.

        Answers within ``connection_timeout + 0.9`` s and never raises for an outage: a down or
        frozen server gives ``redis_connected: False`` with ``error`` set and figures None.

        Returns:
            ``redis_connected``, ``checked_at`` (ISO 8601 UTC), ``error``, ``latency_ms``,
            ``redis_version``, ``server``, ``used_memory_bytes``, ``queue_stats`` (per queue:
            ``high``, ``normal``, ``low``, ``queue_size``, ``in_flight``, ``scheduled_jobs``,
            ``failed_jobs``, ``system_errors``, ``oldest_age_s``), ``totals``, ``workers``
            (``count`` with a heartbeat in the last 30 s, ``active`` running items now) and
            ``topology`` (``mode``, ``service_name``, ``sentinels``, ``role``, ``master``,
            ``connected_replicas``; see the README's "Running on Sentinel and Cluster").
        """
        return system_health(self.config)

    def queue_names(self) -> list[str]:
        """Every registered queue name (names enqueued to, until forgotten or retired)."""
        return queues.queue_names(self.config)

    def list_queues(self) -> list[QueueInfo]:
        """Every registered queue: ``name``, ``high``/``normal``/``low``, ``waiting``,
        ``in_flight``, ``scheduled`` and ``last_activity`` (ISO 8601 UTC, or None)."""
        return queues.list_queues(self.config)

    def list_scheduled(self, queue_name: str | None = None, limit: int = 50) -> list[ScheduledItem]:
        """Up to ``limit`` items enqueued with ``delay=``/``run_at=`` that are not due yet
        (of ``queue_name`` when given), soonest first: ``operation_id``, ``queue_name``,
        ``priority``, ``processor``, ``next_run_at`` and ``expires_at`` (ISO 8601 UTC)."""
        return scheduled.list_scheduled(self.config, queue_name, limit)

    def forget_queue(self, name: str) -> None:
        """Remove the queue ``name`` from the registry, freeing its place under ``max_queues``.

        Only an empty queue is forgotten: nothing waiting in any tier, in flight or scheduled
        (checked in the same atomic step). Enqueueing to the name later registers it again.

        Raises:
            ValueError: ``name`` is invalid, unknown, or its queue is not empty (the message
                gives the counts).
        """
        queues.forget_queue(self.config, name)
        record = {"action": "forget_queue", "queue": name, **operator_identity()}
        logger.info("forget_queue: %s", name, extra=record)

    def retire_idle_queues(self) -> list[str]:
        """Remove the names of queues idle for longer than ``backup_ttl`` (nothing waiting,
        nothing finished since a pass last saw them in use) and empty; returns them sorted.

        Workers run this every ``RETIRE_INTERVAL_S`` (60 s); a pass also notes which queues
        are in use (``last_activity``). Never removes a queue with anything waiting, in
        flight or scheduled.
        """
        return queues.retire_idle_queues(self.config)

    def pause(self, queue: str, priority: str | None = None) -> list[str]:
        """Stop every worker claiming ``queue`` (all tiers, or one ``priority``) until
        :meth:`resume`; producers keep enqueueing. Returns the tiers paused."""
        tiers: list[str] = list(queue_limits.pause(self.config, queue, priority))
        audit("pause", queue=queue, priority=priority or "all")
        return tiers

    def resume(self, queue: str, priority: str | None = None) -> list[str]:
        """Let workers claim ``queue`` (all tiers, or one ``priority``) again; returns the
        tiers resumed."""
        tiers: list[str] = list(queue_limits.resume(self.config, queue, priority))
        audit("resume", queue=queue, priority=priority or "all")
        return tiers

    def paused(self) -> dict[str, list[str]]:
        """Paused tiers per queue name (queues with none paused are left out)."""
        return {name: list(tiers) for name, tiers in queue_limits.paused(self.config).items()}

    def get_limits(self) -> dict[str, LimitInfo]:
        """Every queue's live limits (``max_concurrency``, ``rate_limit``, ``source``) and
        their use (``slots``, ``recent_claims``)."""
        return queue_limits.get_limits(self.config)

    def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Set ``queue``'s limits at runtime, for every worker at once. They win over
        ``QueueConfig(limits=...)`` until :meth:`clear_limits`."""
        queue_limits.set_limits(self.config, queue, limits)
        audit(
            "set_limits",
            queue=queue,
            max_concurrency=str(limits.max_concurrency),
            rate_limit=str(limits.rate_limit),
        )

    def clear_limits(self, queue: str) -> bool:
        """Remove ``queue``'s live limits; True if it had any. A worker whose config declares
        limits for it writes them again when it starts."""
        cleared = queue_limits.clear_limits(self.config, queue)
        audit("clear_limits", queue=queue)
        return cleared

    def list_dead_letters(
        self,
        *,
        system_errors: bool = False,
        limit: int | None = DEFAULT_LIST_LIMIT,
        **filters: Unpack[Filters],
    ) -> list[DeadLetter]:
        """Records of ``failures`` (or ``system_errors``), newest first, filtered.

        Records are read back as stored: one written by another version may lack fields.

        Args:
            system_errors: read ``system_errors`` instead of ``failures``.
            filters: ``queue``, ``processor``, ``error_type``, ``since``, ``until``: see
                :class:`DeadLetterFilter` (times: epoch seconds or datetimes, naive = UTC).
            limit: most records returned (None: all).
        """
        flt = DeadLetterFilter.build(**filters)
        found: list[DeadLetter] = []
        for _, record in scan(self._client, self._list_key(system_errors), flt):
            if limit is not None and len(found) >= limit:
                break
            found.append(cast(DeadLetter, record or {}))
        return found

    def get_dead_letter(self, operation_id: str, system_errors: bool = False) -> DeadLetter | None:
        """The newest record of ``operation_id`` (full history and payload), or None."""
        flt = DeadLetterFilter(operation_ids=frozenset([operation_id]))
        for _, record in scan(self._client, self._list_key(system_errors), flt):
            return cast(DeadLetter, record)
        return None

    def requeue(
        self,
        *,
        system_errors: bool = False,
        operation_ids: Iterable[str] | None = None,
        all: bool = False,
        priority: str | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        **filters: Unpack[Filters],
    ) -> DeadLetterReport:
        """Put dead letters back on their queues as fresh items (attempts 0, no history).

        Each item keeps its operation id, goes to the back of its queue (at ``priority`` if
        given) and its status record becomes ``pending``. An item whose payload cannot be
        decoded is skipped, with the reason, and stays where it is.

        Args:
            operation_ids / all: the records to act on (one of them is required); the filters
                narrow either (see :meth:`list_dead_letters`).
            priority: new priority for every requeued item.
            dry_run: count what would be requeued; write nothing.
            limit: most items requeued.

        Returns:
            ``{"count", "operation_ids", "skipped": [{"operation_id", "reason"}],
            "not_found": [ids asked for but not requeued], "dry_run", "list"}``.

        Raises:
            ValueError: neither ``operation_ids`` nor ``all``, or an invalid ``priority``.
        """
        new_priority = validate_priority(priority) if priority is not None else None
        ids = selected_ids(operation_ids, all)
        flt = DeadLetterFilter.build(ids, **filters)
        list_key = self._list_key(system_errors)
        now = self.config.clock.time()

        def build(raw: bytes, record: dict[str, Any] | None) -> Write | str:
            try:
                return self._requeue_write(list_key, raw, record, new_priority, now)
            except (DecodeError, SerializationError) as exc:
                return str(exc)

        outcome = mutate(self._client, list_key, flt, build, dry_run=dry_run, limit=limit)
        return report("requeue", system_errors, outcome, ids, dry_run, flt)

    def purge(
        self,
        *,
        system_errors: bool = False,
        operation_ids: Iterable[str] | None = None,
        all: bool = False,
        dry_run: bool = False,
        limit: int | None = None,
        **filters: Unpack[Filters],
    ) -> DeadLetterReport:
        """Delete dead letters for good; same selection and result as :meth:`requeue`."""
        ids = selected_ids(operation_ids, all)
        flt = DeadLetterFilter.build(ids, **filters)
        list_key = self._list_key(system_errors)

        script_keys = [list_key, self.config.keys.metrics]
        kind = _dead_letter_kind(system_errors)

        def build(raw: bytes, record: dict[str, Any] | None) -> Write:
            return lambda pipe, direction: self._drop(
                keys=script_keys, args=[raw, direction, kind], client=pipe
            )

        outcome = mutate(self._client, list_key, flt, build, dry_run=dry_run, limit=limit)
        return report("purge", system_errors, outcome, ids, dry_run, flt)

    def export(
        self,
        *,
        system_errors: bool = False,
        limit: int | None = None,
        **filters: Unpack[Filters],
    ) -> Iterator[str]:
        """Yield matching records as JSON lines (the stored text, no newline), newest first."""
        flt = DeadLetterFilter.build(**filters)
        for count, (raw, _) in enumerate(scan(self._client, self._list_key(system_errors), flt)):
            if limit is not None and count >= limit:
                return
            yield raw.decode("utf-8", "replace")

    def cancel(self, operation_id: str) -> CancelStatus:
        """Cancel one operation: the same as ``QueueManager.cancel`` (see Job control)."""
        plan = cancel_operation(self.config, operation_id, cancel_nonce())
        answer: CancelStatus = run_sync(self._client, self._all_scripts(), plan)
        audit("cancel", operation_id=operation_id, answer=answer)
        return answer

    def running_operations(self, limit: int = 20) -> list[RunningOperation]:
        """Up to about ``limit`` running (leased) operations, oldest start first, with their
        worker, progress and cancel mark (``monitor`` shows them)."""
        return run_sync(self._client, self._all_scripts(), read_running(self.config.keys, limit))

    def _all_scripts(self) -> Scripts[Script]:
        scripts: Scripts[Script] | None = getattr(self, "_scripts", None)
        if scripts is None:
            scripts = self._scripts = Scripts.register(self._client)
        return scripts

    # --- internals -----------------------------------------------------------------------------

    def _list_key(self, system_errors: bool) -> str:
        return self.config.keys.system_errors if system_errors else self.config.keys.failures

    def _requeue_write(
        self,
        list_key: str,
        raw: bytes,
        record: dict[str, Any] | None,
        priority: str | None,
        now: float,
    ) -> Write:
        env = stored_envelope(record)
        fresh: Envelope = {"v": SCHEMA_VERSION, "id": env["id"], **env}  # v, id stay first
        fresh["attempts"] = 0
        fresh["history"] = []
        fresh["first_at"] = fresh["enqueued_at"] = now
        if priority is not None:
            fresh["priority"] = validate_priority(priority)
        data = encode_envelope(fresh, max_bytes=self.config.max_payload_bytes)
        keys = self.config.keys
        script_keys = [
            list_key,
            keys.queue(fresh["queue"], fresh["priority"]),
            keys.registry,
            keys.notify,
            keys.operation(fresh["id"]),
            keys.ready,
            keys.metrics,
        ]
        dedup = fresh.get("dedup")
        if isinstance(dedup, str) and dedup.startswith(keys.dedup_prefix):
            script_keys.append(dedup)
        args: list[Any] = [
            raw,
            0,  # the LREM direction, set per write
            data,
            fresh["queue"],
            fresh["priority"],
            fresh["processor"],
            now,
            NOTIFY_CAP,
            fresh["id"],
            _dead_letter_kind(list_key == keys.system_errors),
        ]

        def write(pipe: Any, direction: int) -> None:
            args[1] = direction
            self._requeue(keys=script_keys, args=args, client=pipe)

        return write


def _dead_letter_kind(system_errors: bool) -> str:
    """The name of a dead-letter list in the per-queue counts ("dead:<kind>:<queue>")."""
    return "system_errors" if system_errors else "failed"
