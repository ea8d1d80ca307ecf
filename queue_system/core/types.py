"""Shared type names: priorities, user callables, and the records written to Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypedDict

from queue_system.core.limits import Source

Priority = Literal["high", "normal", "low"]
#: Claim order: every ready high item before any normal, every normal before any low.
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")

JSONDict = dict[str, Any]
Processor = Callable[[Any], Any | Awaitable[Any]]
Callback = Callable[[JSONDict], Any | Awaitable[Any]]
CallableRef = Callable[..., Any] | str


class _Attempt(TypedDict):
    at: float
    error_type: str
    message: str
    traceback: str


class AttemptRecord(_Attempt, total=False):
    """One failed run of an item, kept in its envelope's history.

    ``rule`` names the retry rule that decided what followed (``"retry"``,
    ``"give_up_on:ValueError"``, ``"max_attempts"``...: :mod:`queue_system.core.retry_rules`);
    records written before rules existed have none.
    """

    rule: str
    #: What the run's ``before_process`` hooks noted (``JobInfo.notes``): the next run's
    #: hooks read it as ``JobInfo.previous`` (e.g. a trace link to this run's span).
    notes: dict[str, str]


class Envelope(TypedDict, total=False):
    """An item as stored in a waiting list (JSON). ``v`` is the schema version."""

    v: int
    id: str
    queue: str
    priority: Priority
    processor: str
    entity: Any
    retry: JSONDict
    on_success: str | None
    on_failure: str | None
    timeout: float | None
    dedup: str | None
    attempts: int
    first_at: float
    enqueued_at: float
    history: list[AttemptRecord]
    #: When a worker first found its processor or callback unknown (deploy skew), epoch s.
    unknown_since: float
    #: What ``before_enqueue`` middleware added (e.g. a trace context); JSON values.
    meta: JSONDict
    #: Epoch s after which the item, if not started yet, is never run (``expires=``).
    expires_at: float


class DeadLetter(TypedDict):
    """A record in ``failures`` or ``system_errors``: why, when, and the original item."""

    operation_id: str | None
    reason: str
    error_type: str
    message: str
    at: float
    queue: str | None
    priority: str | None
    processor: str | None
    attempts: int
    history: list[AttemptRecord]
    envelope: JSONDict | None
    raw: str | None


# --- What the public API returns -------------------------------------------------------------
# Times are ISO 8601 UTC strings (core.clock.iso_utc) or None.

#: ``get_queue_status()``: Redis key -> count, for every waiting list and tier, plus
#: ``failures``, ``system_errors``, in flight (``inflight``), delayed retries (``delayed``) and
#: items enqueued with ``delay=``/``run_at=`` (``scheduled``).
QueueStatus = dict[str, int]


class _EnqueueAnswer(TypedDict):
    operation_id: str
    #: "dependency_failed": stored straight into ``failures`` (``depends_on`` named an
    #: operation that had already failed, been cancelled or expired).
    status: Literal["queued", "duplicate", "dependency_failed"]
    queue_name: str
    priority: Priority


class EnqueueResult(_EnqueueAnswer, total=False):
    """What ``enqueue`` returns for one item (and ``enqueue_batch`` for each).

    ``existing_status`` is there when the item duplicates an operation whose status record
    exists (a caller-chosen ``operation_id`` enqueued before): that operation's status.
    """

    existing_status: str


class OperationInfo(TypedDict):
    """``get_operation()``: the status record of one operation."""

    operation_id: str
    status: str | None
    queue_name: str | None
    priority: str | None
    processor: str | None
    attempts: int
    worker: str | None
    last_error: Any
    result: Any
    #: Items that will be taken before it (higher tiers first), while it waits; None when it
    #: is not waiting, or when it is too deep in a long tier to be read cheaply (see below).
    position: int | None
    #: Set instead of ``position`` when the item is more than ``POSITION_SCAN_ITEMS`` from both
    #: ends of its tier: at least this many items are ahead of it.
    position_at_least: int | None
    enqueued_at: str | None
    started_at: str | None
    finished_at: str | None
    next_run_at: str | None
    #: On an ``expired`` operation: the ``expires=`` time it was not started by; else None.
    expired_at: str | None
    #: What the processor last reported with ``current_job().update_progress`` (or None).
    progress: Any
    #: When a cancel was requested while it ran (ISO 8601 UTC), else None.
    cancel_requested_at: str | None
    #: The operation ids it was enqueued ``depends_on`` (None for an item without any).
    depends_on: list[str] | None


#: ``cancel()``: "cancelled" (it will never run), "cancelling" (it runs: its worker stops it
#: and ends it cancelled), "already_finished" (it had ended) or "not_found" (unknown id).
CancelStatus = Literal["cancelled", "cancelling", "already_finished", "not_found"]


class RunningOperation(TypedDict):
    """``QueueAdmin.running_operations()``: one leased item and what its record says."""

    operation_id: str
    queue_name: str | None
    processor: str | None
    worker: str | None
    started_at: str | None
    progress: Any
    cancel_requested_at: str | None


class WorkerInfo(TypedDict):
    """``get_workers()``: one live worker, as its last heartbeat described it."""

    id: str | None
    host: str | None
    pid: int
    queues: list[str] | None
    concurrency: int
    started_at: str | None
    jobs_done: int
    jobs_failed: int
    running: int
    last_seen: str | None
    supervisor: str | None  # the id of the supervisor that started it (--processes), if any


class QueueStats(TypedDict):
    """One queue in a health snapshot: depth per tier and where its other items are."""

    high: int
    normal: int
    low: int
    queue_size: int
    in_flight: int
    scheduled_jobs: int
    failed_jobs: int
    system_errors: int
    oldest_age_s: float | None
    #: Age (s) of the oldest waiting item of each tier (None: empty, or unreadable item).
    oldest_age_by_priority: dict[Priority, float | None]
    #: Tiers no worker claims from (``QueueAdmin.pause``), in claim order.
    paused: list[Priority]


class HealthTotals(TypedDict):
    """The namespace's totals in a health snapshot."""

    queue_size: int
    in_flight: int
    scheduled_jobs: int
    failed_jobs: int
    system_errors: int


class WorkerCounts(TypedDict):
    """Live workers in a health snapshot: heartbeat in the last 30 s, and running items now."""

    count: int
    active: int


class HealthSnapshot(TypedDict):
    """``get_system_health()``: figures are None when Redis did not answer."""

    redis_connected: bool
    checked_at: str
    error: str | None
    latency_ms: float | None
    redis_version: str | None
    server: str | None
    used_memory_bytes: int | None
    queue_stats: dict[str, QueueStats]
    totals: HealthTotals | None
    workers: WorkerCounts | None
    topology: Topology


class Topology(TypedDict):
    """``get_system_health()["topology"]``: how the library reaches Redis and what answered.

    ``mode`` is ``standalone``, ``sentinel`` or ``unknown`` (a client whose pool does not say);
    ``role`` (``master``/``slave``), ``master`` (``host:port``) and ``connected_replicas``
    are None when Redis did not answer (``master`` also for an unknown client)."""

    mode: str
    service_name: str | None
    sentinels: list[str]
    role: str | None
    master: str | None
    connected_replicas: int | None


class ConfiguredTopology(TypedDict):
    """``QueueConfig.topology()``: the deployment the configuration names (no I/O).

    ``mode`` is ``standalone``, ``sentinel`` or ``unknown`` (a client whose pool does not
    say); ``service_name`` and ``sentinels`` (``host:port``) are set for Sentinel only."""

    mode: str
    service_name: str | None
    sentinels: list[str]


class TierMetrics(TypedDict):
    """One queue and priority in ``get_metrics()["queues"]``."""

    depth: int
    avg_wait_ms: float
    processed: int
    #: Outcomes of this tier's items (shared counters ``<name>:<queue>:<priority>``);
    #: ``enqueued`` is 0 while the producer's script does not count per tier.
    enqueued: int
    succeeded: int
    failed: int
    retried: int
    system_errors: int


class MetricsSnapshot(TypedDict, total=False):
    """``get_metrics()``: totals shared by every process, and this process's ``local`` view."""

    enqueued: int
    processed: int
    succeeded: int
    failed: int
    retried: int
    system_errors: int
    expired: int
    cancelled: int
    success_rate: float
    avg_process_time: float
    queues: dict[str, dict[str, TierMetrics]]
    local: dict[str, float]


class SkippedRecord(TypedDict):
    """A dead letter a requeue left where it was, and why."""

    operation_id: str | None
    reason: str | None


class DeadLetterReport(TypedDict):
    """What ``QueueAdmin.requeue`` and ``QueueAdmin.purge`` did (or would do, ``dry_run``)."""

    count: int
    operation_ids: list[str]
    skipped: list[SkippedRecord]
    not_found: list[str]
    dry_run: bool
    list: str


class LimitInfo(TypedDict):
    """One queue's live limits and how much of them is in use."""

    queue: str
    max_concurrency: int | None
    rate_limit: str | None
    #: ``config`` (from a worker's QueueConfig) or ``runtime`` (``limits set``; wins).
    source: Source
    #: Slots in use: this queue's items whose lease stands.
    slots: int
    #: Claims in the current rate window (as of the last claim of the queue).
    recent_claims: int


class ScheduleInfo(TypedDict):
    """One published schedule. Times are ISO 8601 UTC (None: none yet, or unknown)."""

    name: str
    #: The cron expression, or ``every <seconds>s``.
    when: str
    timezone: str
    queue_name: str
    priority: str
    processor: str
    catch_up: str
    #: The next tick after the last one handled (or after now, if that is later).
    next_run: str | None
    #: The newest tick handled: fired, or skipped by the catch_up policy.
    last_run: str | None
    #: The worker that last published it, and when.
    worker: str
    published_at: str | None
    #: True when no live worker has refreshed it for STALE_AFTER_S (90 s): it was removed
    #: from the code, or no worker runs.
    stale: bool
    #: A worker claimed ticks and has not confirmed their enqueue yet (normally for an
    #: instant; a worker that died meanwhile leaves it to the others, 10 s later).
    claim_open: bool


class ScheduledItem(TypedDict):
    """One item in the scheduled set."""

    operation_id: str | None
    queue_name: str | None
    priority: str | None
    processor: str | None
    next_run_at: str
    expires_at: str | None


class QueueInfo(TypedDict):
    """One registered queue: where its items are, and when it was last seen in use."""

    name: str
    high: int
    normal: int
    low: int
    waiting: int
    in_flight: int
    scheduled: int
    #: Tiers no worker claims from (``QueueAdmin.pause``).
    paused: list[str]
    #: ISO 8601 UTC of the last time a worker's (or ``retire_idle_queues``') pass saw it in
    #: use; None until one has.
    last_activity: str | None
