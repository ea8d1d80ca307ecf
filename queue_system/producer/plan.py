"""The enqueue core shared by QueueManager (sync) and AsyncQueueManager: no I/O here.

Each public producer operation is split into a *plan* (validated arguments → script keys and
arguments, or the commands to pipeline) and an *interpretation* of Redis's answer. The two
shells only send the plan and hand the answer back, so no rule is written twice. Beside it:
:mod:`.encoding` (a new envelope's bytes), :mod:`.purge` (purge_queue's chunks) and
:mod:`.shell` (the public enqueue signature and the script call both managers send).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

from queue_system.config import NOTIFY_CAP, QueueConfig
from queue_system.core.checks import (
    validate_new_queue_name,
    validate_operation_id,
    validate_priority,
    validate_timeout,
)
from queue_system.core.envelope import (
    SCHEMA_VERSION,
    Serializer,
    as_text,
    dumps,
    encode_envelope,
    entity_object,
)
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.core.types import CallableRef, EnqueueResult, Envelope
from queue_system.producer.encoding import default_retry_dict, encode_new


def generate_operation_id() -> str:
    """A new random operation id (32 hex characters, 128 random bits)."""
    return os.urandom(16).hex()


def generate_nonce() -> str:
    """A new random nonce for one enqueue call (16 hex characters, 64 random bits)."""
    return os.urandom(8).hex()


def hash_entity(entity: Any, custom_serializer: Serializer | None = None) -> str:
    """SHA-256 of the entity's canonical JSON (sorted keys)."""
    canonical = json.dumps(
        json.loads(dumps(entity, custom_serializer, what="entity")),
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(kw_only=True)
class EnqueuePlan:
    """What one ``enqueue``/``enqueue_batch`` call sends: one script call and its reading.

    A plan is built once per call, with a random ``nonce`` in its arguments; every re-send of
    the call (redis-py's reconnect, the guard's retries) sends this same plan, which is how
    ``enqueue.lua`` recognises an earlier run of the call whose reply was lost.
    """

    keys: list[str]
    args: list[Any]
    results: list[EnqueueResult] = field(default_factory=list)
    #: The script the managers send it to; redis_errors() alone translates its errors.
    script: ClassVar[str] = "enqueue"
    errors: ClassVar[AbstractContextManager[None]] = nullcontext()

    def read(self, answer: Sequence[bytes | str]) -> EnqueueResult:
        """The result of a one-item plan (``enqueue``): see :meth:`interpret`."""
        return self.interpret(answer)[0]

    def interpret(
        self,
        answer: Sequence[bytes | str],
        config: QueueConfig | None = None,
        started: float | None = None,
    ) -> list[EnqueueResult]:
        """Mark items the script did not store as duplicates of the operation it named.

        With ``config`` and ``started`` (a batch), also records the batch metric.
        """
        for index, result in enumerate(self.results):
            holder, existing = answer[2 * index], answer[2 * index + 1]
            if holder:
                result["status"] = "duplicate"
                result["operation_id"] = as_text(holder)
                if existing:
                    result["existing_status"] = as_text(existing)
        if config is not None and started is not None and self.results:
            first = self.results[0]
            config.metrics.record_batch(
                "enqueue_batch",
                len(self.results),
                1000 * (config.clock.monotonic() - started),
                queue=first["queue_name"],
                priority=first["priority"],
            )
        return self.results


@dataclass(kw_only=True)
class EnqueueDraft:
    """A validated enqueue whose envelopes are built but not yet encoded: ``before_enqueue``
    middleware runs between the two (:mod:`queue_system.producer.hooks`); :meth:`finish`
    encodes them into the plan's script call."""

    plan: EnqueuePlan
    envelopes: list[Envelope]
    dedup_flags: list[str]
    dedup_keys: list[str]
    custom_serializer: Serializer | None
    max_bytes: int
    operation_key: Callable[[str], str]
    #: enqueue.lua's due-time argument (see :func:`due_spec`): "" pushes now.
    due: str = ""
    scheduled_key: str = ""
    scheduled_counts_key: str = ""

    def finish(self) -> EnqueuePlan:
        """Encode every envelope into the script call (raises SerializationError if one is
        not JSON or is too large)."""
        keys, args = self.plan.keys, self.plan.args
        for envelope, flag in zip(self.envelopes, self.dedup_flags, strict=True):
            data = None if self.custom_serializer is not None else encode_new(envelope)
            if data is None or len(data) > self.max_bytes:  # (over: encode_envelope raises)
                data = encode_envelope(envelope, self.custom_serializer, self.max_bytes)
            keys.append(self.operation_key(envelope["id"]))
            args.extend((envelope["id"], data, flag))
        keys.extend(self.dedup_keys)
        if self.due:  # see enqueue.lua: the due time, then the scheduled set and its counts
            args.append(self.due)
            keys.extend((self.scheduled_key, self.scheduled_counts_key))
        return self.plan


def plan_enqueue(
    config: QueueConfig,
    entities: Sequence[Any],
    processor: CallableRef,
    **options: Any,
) -> EnqueuePlan:
    """Validate an enqueue of ``entities`` and build its script call (raises before any I/O);
    options and rules as :func:`draft_enqueue`, with no middleware in between."""
    return draft_enqueue(config, entities, processor, **options).finish()


def draft_enqueue(
    config: QueueConfig,
    entities: Sequence[Any],
    processor: CallableRef,
    *,
    # Where and which: the tier, the ids.
    queue_name: str | None = None,
    priority: str = "normal",
    operation_ids: Sequence[str | None] | None = None,
    batch: bool = False,
    # When: the due time and the expiry.
    delay: float | dt.timedelta | None = None,
    run_at: dt.datetime | None = None,
    expires: float | dt.timedelta | dt.datetime | None = None,
    # How it runs, and how it is encoded and deduplicated.
    timeout: float | None = None,
    retry_config: QueueRetryConfig | None = None,
    on_success: CallableRef | None = None,
    on_failure: CallableRef | None = None,
    custom_serializer: Callable[[Any], Any] | None = None,
    deduplication_key: str | bool | None = None,
) -> EnqueueDraft:
    """Validate an enqueue of ``entities`` and build its envelopes (raises before any I/O).

    Each entity must be a dict (see :func:`entity_object`); a TypeError names the bad one
    (``entity``, or ``entities[i]`` when ``batch``). ``queue_name=None`` means the processor's
    name; ``""`` and reserved names raise ValueError.
    """
    if processor is None:
        raise TypeError("processor is required: a module-level callable or a registered name")
    processor_name = config.registry.name_for(processor)
    queue = validate_new_queue_name(
        default_queue_name(processor_name) if queue_name is None else queue_name
    )
    priority = validate_priority(priority)
    if retry_config is not None and not isinstance(retry_config, QueueRetryConfig):
        raise TypeError("retry_config must be a QueueRetryConfig")
    retry_dict = retry_config.to_dict() if retry_config is not None else default_retry_dict()
    success_name = config.registry.name_for(on_success) if on_success is not None else None
    failure_name = config.registry.name_for(on_failure) if on_failure is not None else None
    validate_timeout(timeout)
    if custom_serializer is not None and not callable(custom_serializer):
        raise TypeError("custom_serializer must be callable (a json.dumps default= function)")
    if deduplication_key is not None and not isinstance(deduplication_key, (str, bool)):
        raise TypeError("deduplication_key must be a str, True (entity hash) or None")
    ids = list(operation_ids) if operation_ids is not None else [None] * len(entities)
    now = config.clock.time()
    due = due_spec(delay, run_at)
    expires_at = expiry_time(expires, now)
    if expires_at is not None and due and expires_at <= _due_estimate(due, now):
        raise ValueError("expires must come after the item is due (delay=/run_at=)")
    keys = [
        config.keys.registry,
        config.keys.notify,
        config.keys.metrics,
        config.keys.queue(queue, priority),
        config.keys.ready,
    ]
    args: list[Any] = [
        queue,
        config.max_queues,
        NOTIFY_CAP,
        config.backup_ttl,  # the counters' TTL; status records and dedup keys get none
        len(entities),
        priority,
        processor_name,
        now,
        generate_nonce(),
    ]
    dedup_keys: list[str] = []
    plan = EnqueuePlan(keys=keys, args=args)
    draft = EnqueueDraft(
        plan=plan,
        envelopes=[],
        dedup_flags=[],
        dedup_keys=dedup_keys,
        custom_serializer=custom_serializer,
        max_bytes=config.max_payload_bytes,
        operation_key=config.keys.operation,
        due=due,
        scheduled_key=config.keys.scheduled,
        scheduled_counts_key=config.keys.scheduled_counts,
    )
    for index, (entity, given_id) in enumerate(zip(entities, ids, strict=False)):
        if not isinstance(entity, dict):
            argument = f"entities[{index}]" if batch else "entity"
            entity = entity_object(entity, custom_serializer, argument)
        op_id = validate_operation_id(given_id) if given_id is not None else generate_operation_id()
        dedup = _dedup_key(config, deduplication_key, processor_name, entity, custom_serializer)
        envelope: Envelope = {
            "v": SCHEMA_VERSION,
            "id": op_id,
            "queue": queue,
            "priority": priority,
            "processor": processor_name,
            "entity": entity,
            "retry": retry_dict,
            "on_success": success_name,
            "on_failure": failure_name,
            "timeout": timeout,
            "dedup": dedup,
            "attempts": 0,
            "first_at": now,
            "enqueued_at": now,
            "history": [],
        }
        if expires_at is not None:
            envelope["expires_at"] = expires_at
        draft.envelopes.append(envelope)
        if dedup is not None:
            dedup_keys.append(dedup)
        draft.dedup_flags.append("1" if dedup is not None else "0")
        plan.results.append(
            {"operation_id": op_id, "status": "queued", "queue_name": queue, "priority": priority}
        )
    return draft


def plan_enqueue_batch(
    config: QueueConfig, entities: Sequence[Any], processor: CallableRef, **options: Any
) -> EnqueuePlan | None:
    """Plan for ``enqueue_batch``; None when ``entities`` is empty (nothing to send)."""
    draft = draft_enqueue_batch(config, entities, processor, **options)
    return None if draft is None else draft.finish()


def draft_enqueue_batch(
    config: QueueConfig, entities: Sequence[Any], processor: CallableRef, **options: Any
) -> EnqueueDraft | None:
    """Draft for ``enqueue_batch``; None when ``entities`` is empty (nothing to send)."""
    if isinstance(options.get("deduplication_key"), str):
        raise ValueError("enqueue_batch takes deduplication_key=True (per entity), not a str")
    if "operation_id" in options:
        raise TypeError("enqueue_batch takes operation_ids=[...], not operation_id")
    if "depends_on" in options or "on_dependency_failure" in options:
        raise TypeError(
            "enqueue_batch does not take depends_on: enqueue dependent items one by one"
        )
    if isinstance(entities, (str, bytes, dict)) or not isinstance(entities, Sequence):
        raise TypeError("entities must be a list of entities")
    if not entities:
        return None
    return draft_enqueue(config, entities, processor, batch=True, **options)


def _seconds(value: float | dt.timedelta, name: str) -> float:
    """A duration as seconds: a finite, non-negative number or a timedelta."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name} must be seconds (int/float) or a timedelta")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _aware_epoch(value: dt.datetime, name: str) -> float:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime (naive datetimes are ambiguous); "
            "e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    return value.timestamp()


def due_spec(delay: float | dt.timedelta | None, run_at: dt.datetime | None) -> str:
    """The due-time argument of ``enqueue.lua``: ``""`` (now), ``"+<ms>"`` (``delay`` after the
    server's time) or ``"=<ms>"`` (``run_at``, absolute). Raises on both, a negative delay or a
    naive datetime."""
    if delay is not None and run_at is not None:
        raise ValueError("give delay= or run_at=, not both")
    if delay is not None:
        seconds = _seconds(delay, "delay")
        return f"+{seconds * 1000:.3f}" if seconds > 0 else ""  # 0: pushed now, as usual
    if run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise TypeError("run_at must be a timezone-aware datetime")
        return f"={_aware_epoch(run_at, 'run_at') * 1000:.3f}"
    return ""


def expiry_time(expires: float | dt.timedelta | dt.datetime | None, now: float) -> float | None:
    """Epoch seconds after which an item that has not started is never run: ``expires``
    seconds (or a timedelta) after ``now`` (the producer's clock), or an aware datetime."""
    if expires is None:
        return None
    if isinstance(expires, dt.datetime):
        return _aware_epoch(expires, "expires")
    seconds = _seconds(expires, "expires")
    if seconds == 0:
        raise ValueError("expires must be > 0 seconds")
    return now + seconds


def _due_estimate(due: str, now: float) -> float:
    """When a due spec falls, on the producer's clock (for the expires check only)."""
    value = float(due[1:]) / 1000
    return now + value if due.startswith("+") else value


def default_queue_name(processor_name: str) -> str:
    """``"app.tasks:process_data"`` → ``"process_data"`` (the reference's queue naming)."""
    return processor_name.rpartition(":")[2].rpartition(".")[2]


def _dedup_key(
    config: QueueConfig,
    deduplication_key: str | bool | None,
    processor_name: str,
    entity: Any,
    custom_serializer: Serializer | None,
) -> str | None:
    if deduplication_key is None or deduplication_key is False:
        return None
    if deduplication_key is True:
        return config.keys.dedup(f"{processor_name}:{hash_entity(entity, custom_serializer)}")
    if not deduplication_key:
        raise ValueError("deduplication_key must not be empty")
    return config.keys.dedup(deduplication_key)
