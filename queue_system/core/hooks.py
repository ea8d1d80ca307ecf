"""Middleware: the typed hook points, what hooks receive, and the ordered chains that call them.

A middleware is any object with some of these methods (sync ``def`` or ``async def``); subclass
:class:`Middleware` to get type-checked signatures and no-op defaults::

    on_startup(worker)              the worker started (before it claims anything)
    on_shutdown(worker)             the worker stopped running items (before it closes)
    before_enqueue(envelope)        once per item enqueued (managers, cron): may fill meta
    before_process(job)             a worker is about to run the item's processor
    after_process(job, outcome)     the item's outcome is written (succeeded after its ack)
    after_process_batch(pairs)      optional batch form of after_process for acked successes
    on_dead_letter(record)          a record was written to failures or system_errors

``before_*`` and ``on_startup`` run in registration order, ``after_*``, ``on_dead_letter`` and
``on_shutdown`` in reverse (the first registered wraps the others). A hook that raises is
reported (logged with the operation id, counted as ``hook_errors``) and the others still run:
a hook never loses, fails or delays an item's outcome. Pure: no I/O here; the chain's owner
gives it the error reporter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

from queue_system.core.types import JSONDict

OutcomeStatus = Literal["succeeded", "retried", "failed", "system_error", "expired", "cancelled"]
#: Hooks called in registration order; every other hook is called in reverse.
FORWARD_HOOKS = ("on_startup", "before_enqueue", "before_process")
REVERSE_HOOKS = ("after_process", "after_process_batch", "on_dead_letter", "on_shutdown")
HOOK_NAMES = FORWARD_HOOKS + REVERSE_HOOKS
_EMPTY_META: Mapping[str, Any] = MappingProxyType({})


# JobInfo and Outcome are NamedTuples, not frozen dataclasses: one of each is built per item
# on the drain path, and a frozen dataclass costs about 3x as much to build (measured
# 4.2 vs 1.8 us for JobInfo): read-only all the same.


class JobInfo(NamedTuple):
    """A read-only view of the item a hook is called for.

    ``queue``, ``priority`` and ``processor`` are None only for an item that could not be
    decoded (``system_error`` with reason ``undecodable``); ``operation_id`` too when even its
    opening bytes are unreadable. ``attempt`` is the run number, 1 for the first run; ``meta``
    is what ``before_enqueue`` hooks stored with the item.

    ``notes`` (a run's only writable part, None where no run happens) takes string notes from
    ``before_process`` hooks: when the run fails they are kept in its attempt record, and the
    next run's hooks read them as ``previous`` (empty on a first run). E.g. the OpenTelemetry
    middleware notes the run's span there, so the retry's span links to it.
    """

    operation_id: str | None
    queue: str | None
    priority: str | None
    processor: str | None
    attempt: int
    entity: Any
    meta: Mapping[str, Any] = _EMPTY_META
    notes: dict[str, str] | None = None
    previous: Mapping[str, str] = _EMPTY_META


class Outcome(NamedTuple):
    """How one run of an item ended (read-only).

    Attributes:
        status: ``succeeded`` (acked), ``retried`` (scheduled again), ``failed`` (to
            ``failures``), ``system_error`` (could not run: to ``system_errors``); ``expired``
            (``expires=`` passed before it started) and ``cancelled``.
        exception: what the processor raised (or why the item could not run), else None.
        duration_ms: how long the processor ran (0 when it did not run).
        wait_ms: how long the item waited in its queue before this run.
        rule: for ``retried`` / ``failed``, the retry rule that decided (``"retry"``,
            ``"give_up_on:ValueError"``, ``"max_attempts"``...).
        reason: for ``system_error``, the short reason stored with the record.
    """

    status: OutcomeStatus
    exception: BaseException | None = None
    duration_ms: int = 0
    wait_ms: int = 0
    rule: str | None = None
    reason: str | None = None


class Middleware:
    """Base class with a no-op for every hook; override the ones you need (sync or async).

    Subclassing is optional: the chain calls whichever of these methods an object has, and
    skips the no-ops inherited from here at no cost.
    """

    def on_startup(self, worker: Any) -> Any:
        """The worker ``worker`` started; may be ``async``."""

    def on_shutdown(self, worker: Any) -> Any:
        """The worker ``worker`` stopped running items; may be ``async``."""

    def before_enqueue(self, envelope: JSONDict) -> Any:
        """A copy of the item about to be stored; what it puts in ``envelope["meta"]`` (a dict
        of JSON values) is stored with the item. ``async`` only with AsyncQueueManager."""

    def before_process(self, job: JobInfo) -> Any:
        """The processor of ``job`` is about to run; may be ``async``."""

    def after_process(self, job: JobInfo, outcome: Outcome) -> Any:
        """The outcome of one run of ``job`` was written; may be ``async``."""

    def on_dead_letter(self, record: JSONDict) -> Any:
        """``record`` (a ``DeadLetter``) was written to failures or system_errors."""


class HookErrorReporter(Protocol):
    """Told when a hook raised: logs and counts it (the chain itself does no I/O)."""

    def __call__(self, hook: str, exc: BaseException, operation_id: str | None) -> None: ...


Hook = Callable[..., Any]


def _hooks_of(middleware: Sequence[object], name: str) -> tuple[Hook, ...]:
    """The bound ``name`` methods of ``middleware``, minus the inherited no-ops, in call order."""
    default = getattr(Middleware, name, None)
    found: list[Hook] = []
    for obj in middleware:
        if default is not None and getattr(type(obj), name, None) is default:
            continue  # the inherited no-op
        hook = getattr(obj, name, None)
        if callable(hook):
            found.append(hook)
    return tuple(reversed(found)) if name in REVERSE_HOOKS else tuple(found)


class HookChain:
    """The hooks of a list of middleware, resolved once, called in order, errors reported.

    An empty tuple attribute (``chain.before_process``) means nothing to call: callers test it
    first, so a hook point without hooks costs one attribute read.
    """

    def __init__(self, middleware: Sequence[object], on_error: HookErrorReporter) -> None:
        self.middleware = tuple(middleware)
        self.on_error = on_error
        self.on_startup = _hooks_of(self.middleware, "on_startup")
        self.on_shutdown = _hooks_of(self.middleware, "on_shutdown")
        self.before_enqueue = _hooks_of(self.middleware, "before_enqueue")
        self.before_process = _hooks_of(self.middleware, "before_process")
        self.after_process = _hooks_of(self.middleware, "after_process")
        self.on_dead_letter = _hooks_of(self.middleware, "on_dead_letter")
        # Per middleware (reverse order), its batch hook if it has one, else its single hook.
        batch: list[tuple[Hook | None, Hook | None]] = []
        for obj in reversed(self.middleware):
            many = _hooks_of([obj], "after_process_batch")
            one = _hooks_of([obj], "after_process")
            if many or one:
                batch.append((many[0] if many else None, one[0] if one else None))
        self.after_batch = tuple(batch)

    async def run(self, name: str, hooks: tuple[Hook, ...], *args: Any, op: str | None) -> None:
        """Call ``hooks`` with ``args`` (awaiting async ones); report any that raises."""
        for hook in hooks:
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self.on_error(name, exc, op)

    def run_sync(self, name: str, hooks: tuple[Hook, ...], *args: Any, op: str | None) -> None:
        """Call sync ``hooks``; an async one cannot run here: it is reported, never awaited."""
        for hook in hooks:
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()  # never started: no "was never awaited" warning
                    raise TypeError(
                        f"{name} hook {getattr(hook, '__qualname__', hook)!r} is async: it runs "
                        "with AsyncQueueManager only; give QueueManager a sync hook"
                    )
            except Exception as exc:
                self.on_error(name, exc, op)

    async def run_after_batch(self, pairs: Sequence[tuple[JobInfo, Outcome]]) -> None:
        """``after_process`` for many outcomes: each middleware's batch hook if it has one,
        else its ``after_process`` once per pair."""
        for many, one in self.after_batch:
            if many is not None:
                await self.run("after_process_batch", (many,), pairs, op=None)
            elif one is not None:
                for job, outcome in pairs:
                    await self.run("after_process", (one,), job, outcome, op=job.operation_id)


def meta_of(envelope: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``meta`` an envelope carries, read-only (empty when it has none)."""
    meta = envelope.get("meta")
    return MappingProxyType(meta) if isinstance(meta, dict) and meta else _EMPTY_META


def previous_notes(envelope: Mapping[str, Any]) -> Mapping[str, str]:
    """The notes the item's last failed run left (``JobInfo.previous``): read from stored,
    untrusted history, so anything but string keys and values is left out."""
    history = envelope.get("history")
    last = history[-1] if isinstance(history, list) and history else None
    notes = last.get("notes") if isinstance(last, dict) else None
    if not isinstance(notes, dict) or not notes:
        return _EMPTY_META
    return MappingProxyType(
        {k: v for k, v in notes.items() if isinstance(k, str) and isinstance(v, str)}
    )


def kept_notes(notes: dict[str, str] | None) -> dict[str, str]:
    """The notes of a run worth keeping with its attempt record (strings only)."""
    if not notes:
        return {}
    return {k: v for k, v in notes.items() if isinstance(k, str) and isinstance(v, str)}
