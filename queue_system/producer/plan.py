"""The producer core shared by QueueManager (sync) and AsyncQueueManager: no I/O here.

Each public producer operation is split into a *plan* (validated arguments → script keys and
arguments, or the commands to pipeline) and an *interpretation* of Redis's answer. The two
shells only send the plan and hand the answer back, so no rule is written twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from types import TracebackType
from typing import Any, Literal

import redis

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
    default_json,
    dumps,
    encode_envelope,
    entity_object,
    operation_id_of,
)
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.core.types import CallableRef, EnqueueResult, Envelope
from queue_system.engine.scripts import TOO_MANY_QUEUES
from queue_system.errors import ConfigurationError, QueueUnavailableError

PURGE_CHUNK = 1000
"""Items one purge script call removes at most: 1,000 items of 430 bytes took 4-5 ms of server
time (Valkey 9.1 and Redis 6.2), so other clients are served between chunks."""
PURGE_CHUNK_BYTES = 1 << 20
"""Bytes of items one purge call reads and removes at most (items may be up to
``max_payload_bytes`` each): the call's cost grows with the bytes it copies."""
PURGE_FIRST_READ = 16
"""Items read by a purge's first round trip, before their size is known."""

# The operation id in an envelope's fixed opening, as the Lua scripts read it
# (^{"v":1,"id":"([%w_.:%-]+)"); junk without it has no status record.
_DEDUP_SET = b'"dedup":"'  # only an envelope holding a dedup key has this (else "dedup":null)


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
            data = None if self.custom_serializer is not None else _encode_new(envelope)
            if data is None or len(data) > self.max_bytes:  # (over: encode_envelope raises)
                data = encode_envelope(envelope, self.custom_serializer, self.max_bytes)
            keys.append(self.operation_key(envelope["id"]))
            args.extend((envelope["id"], data, flag))
        keys.extend(self.dedup_keys)
        if self.due:  # see enqueue.lua: the due time, then the scheduled set and its counts
            args.append(self.due)
            keys.extend((self.scheduled_key, self.scheduled_counts_key))
        return self.plan


# --- the envelope of a new item, encoded from cached parts (enqueue's hot path) -----------------

_NEW_KEYS = (
    "v",
    "id",
    "queue",
    "priority",
    "processor",
    "entity",
    "retry",
    "on_success",
    "on_failure",
    "timeout",
    "dedup",
    "attempts",
    "first_at",
    "enqueued_at",
    "history",
)
_NEW_KEYS_EXPIRING = (*_NEW_KEYS, "expires_at")
#: json.dumps as core.envelope.dumps calls it, built once (json.dumps builds one per call).
_ENCODE = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default_json
).encode
# The C encoder behind it, called directly (JSONEncoder.encode makes a new one per call);
# no circular-reference markers: a cycle ends in RecursionError, and the full encoding then
# reports it. None where the interpreter has no C accelerator.
_C_ENCODER = (
    None
    if c_make_encoder is None or c_encode_basestring is None
    else c_make_encoder(
        None, default_json, c_encode_basestring, None, ":", ",", False, False, False
    )
)
#: (queue, priority, processor, on_success, on_failure, timeout) -> the encoded middle parts.
_MIDDLES: dict[tuple[Any, ...], tuple[str, str]] = {}
_MIDDLES_MAX = 512  # distinct tiers x callbacks a process enqueues to; cleared when exceeded


def _encode_new(envelope: Envelope) -> bytes | None:
    """The bytes :func:`encode_envelope` gives for an envelope as :func:`draft_enqueue` builds
    it (no custom serializer, the default retry policy, no ``meta``), spliced from the item's
    own values and parts that are the same for every item of a tier (cached). None for any
    other envelope, and for one that does not encode here (the caller then encodes it in
    full, which raises the usual SerializationError)."""
    if (
        _C_ENCODER is None
        or envelope.get("retry") is not _default_retry_dict()
        or tuple(envelope) not in (_NEW_KEYS, _NEW_KEYS_EXPIRING)
        or envelope["v"] != SCHEMA_VERSION
        or envelope["attempts"] != 0
        or envelope["history"]
    ):
        return None
    tier = (
        envelope["queue"],
        envelope["priority"],
        envelope["processor"],
        envelope["on_success"],
        envelope["on_failure"],
        envelope["timeout"],
    )
    first_at = _float(envelope["first_at"])
    same = envelope["enqueued_at"] is envelope["first_at"]  # a new item's: both are "now"
    enqueued_at = first_at if same else _float(envelope["enqueued_at"])
    expires_at = _float(envelope["expires_at"]) if "expires_at" in envelope else ""
    dedup = envelope["dedup"]
    if first_at is None or enqueued_at is None or expires_at is None:
        return None
    try:
        middles = _MIDDLES.get(tier)
        if middles is None:
            middles = _encode_middles(tier)
            if len(_MIDDLES) >= _MIDDLES_MAX:
                _MIDDLES.clear()
            _MIDDLES[tier] = middles
        text = "".join(
            (
                f'{{"v":{SCHEMA_VERSION},"id":',
                c_encode_basestring(envelope["id"]),
                middles[0],
                *_C_ENCODER(envelope["entity"], 0),
                middles[1],
                "null" if dedup is None else c_encode_basestring(dedup),
                ',"attempts":0,"first_at":',
                first_at,
                ',"enqueued_at":',
                enqueued_at,
                ',"history":[]',
                f',"expires_at":{expires_at}' if expires_at else "",
                "}",
            )
        )
        return text.encode()
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None


def _float(value: Any) -> str | None:
    """A finite float as JSON (json.dumps writes ``float.__repr__``); None for anything else."""
    return float.__repr__(value) if type(value) is float and math.isfinite(value) else None


def _encode_middles(tier: tuple[Any, ...]) -> tuple[str, str]:
    """The parts between ``id`` and ``entity``, and between ``entity`` and ``dedup``."""
    queue, priority, processor, on_success, on_failure, timeout = map(_ENCODE, tier)
    return (
        f',"queue":{queue},"priority":{priority},"processor":{processor},"entity":',
        f',"retry":{_ENCODE(_default_retry_dict())},"on_success":{on_success},'
        f'"on_failure":{on_failure},"timeout":{timeout},"dedup":',
    )


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
    queue_name: str | None = None,
    priority: str = "normal",
    operation_ids: Sequence[str | None] | None = None,
    retry_config: QueueRetryConfig | None = None,
    on_success: CallableRef | None = None,
    on_failure: CallableRef | None = None,
    timeout: float | None = None,
    deduplication_key: str | bool | None = None,
    custom_serializer: Callable[[Any], Any] | None = None,
    batch: bool = False,
    delay: float | dt.timedelta | None = None,
    run_at: dt.datetime | None = None,
    expires: float | dt.timedelta | dt.datetime | None = None,
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
    retry_dict = retry_config.to_dict() if retry_config is not None else _default_retry_dict()
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


@functools.cache
def _default_retry_dict() -> dict[str, Any]:
    """``QueueRetryConfig().to_dict()``, built once (enqueue's hot path); never mutated."""
    return QueueRetryConfig().to_dict()


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


class _RedisErrors:
    """The context manager :func:`redis_errors` returns: stateless, so one serves every call
    (a ``@contextmanager`` generator costs a new generator per enqueue)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            raise QueueUnavailableError(f"queue unavailable: Redis did not answer ({exc})") from exc
        if isinstance(exc, redis.ResponseError) and TOO_MANY_QUEUES in str(exc):
            raise ConfigurationError(
                "this namespace already holds max_queues queue names; raise "
                "QueueConfig(max_queues=...) or reuse queue names"
            ) from exc
        return False  # anything else (or nothing) goes on as it is


_REDIS_ERRORS = _RedisErrors()


def redis_errors() -> _RedisErrors:
    """Translate driver errors into library errors (works around sync and async calls)."""
    return _REDIS_ERRORS


# --- purge_queue -----------------------------------------------------------------------------


@dataclass(kw_only=True)
class PurgeProgress:
    """One ``purge_queue`` call, chunk by chunk (sans-IO: the shells read, then send the plan).

    Each round reads ``next_read()`` items from the list's taking end (tail) and sends
    :meth:`plan` of them to ``purge.lua``; the purge ends when the list is empty or once
    ``left`` (the items waiting at the start) have been removed, so producers that keep
    pushing cannot make it run for ever.
    """

    left: int
    purged: int = 0
    read_size: int = PURGE_FIRST_READ

    def next_read(self) -> int:
        """How many items to read from the tail now (0: done)."""
        return max(0, min(self.left, self.read_size))

    def plan(
        self, config: QueueConfig, list_key: str, items: Sequence[bytes | str]
    ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of the ``purge.lua`` call removing ``items`` (as read from the
        tail, in list order; the tail-most ones if they exceed ``PURGE_CHUNK_BYTES``), with
        each one's status record and dedup key. Sizes the next read from these items."""
        raws = [item if isinstance(item, bytes) else item.encode() for item in items]
        size = sum(map(len, raws))
        self.read_size = max(1, min(PURGE_CHUNK, PURGE_CHUNK_BYTES * len(raws) // max(size, 1)))
        kept = 0
        for count, raw in enumerate(reversed(raws)):
            kept += len(raw)
            if kept > PURGE_CHUNK_BYTES and count > 0:
                raws = raws[len(raws) - count :]
                break
        keys = [list_key, config.keys.ready, config.keys.deps_outbox]
        args: list[Any] = [len(raws)]
        for raw in raws:
            op_id, dedup = _purged_keys(raw, config.keys.dedup_prefix)
            if op_id is not None:
                keys.append(config.keys.operation(op_id))
            if dedup is not None:
                keys.append(dedup)
            flags = ("1" if op_id is not None else "0") + ("1" if dedup is not None else "0")
            args.extend((raw, op_id or "", flags))
        return keys, args

    def removed(self, count: int) -> None:
        """Record the answer of one ``purge.lua`` call."""
        self.purged += count
        self.left -= count


def _purged_keys(raw: bytes, dedup_prefix: str) -> tuple[str | None, str | None]:
    """(operation id, dedup key) of one waiting item; None where it has none (or is junk)."""
    op_id = operation_id_of(raw)
    if op_id is None:
        return None, None
    if _DEDUP_SET not in raw:
        return op_id, None
    try:
        data = json.loads(raw)
    except ValueError:
        return op_id, None
    dedup = data.get("dedup") if isinstance(data, dict) else None
    # Items are data: only a key inside this namespace's dedup space is ever deleted.
    if isinstance(dedup, str) and dedup.startswith(dedup_prefix):
        return op_id, dedup
    return op_id, None
