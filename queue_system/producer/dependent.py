"""Enqueue with ``depends_on``: the plan of one ``enqueue_dependent.lua`` call. No I/O here.

The managers draft the item exactly as for a plain enqueue (same validation, same
``before_enqueue`` middleware, same encoding), then send it to ``enqueue_dependent.lua``
instead of ``enqueue.lua``; see :mod:`queue_system.engine.dependencies` for how it is
released or failed later.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import redis

from queue_system.config import QueueConfig
from queue_system.core.checks import validate_operation_id
from queue_system.core.envelope import as_text
from queue_system.core.records import dependency_failure_head
from queue_system.core.types import EnqueueResult
from queue_system.engine.scripts import UNKNOWN_DEPENDENCY
from queue_system.producer.plan import EnqueueDraft, EnqueuePlan

DependencyFailureMode = Literal["fail", "run"]
MAX_DEPENDENCIES = 100  # per item: each one is two keys of one script call


def check_dependencies(
    depends_on: Sequence[str] | None, on_dependency_failure: str, **refused: Any
) -> list[str] | None:
    """The dependency ids, validated and without repeats (None: a plain enqueue). Raises
    before any I/O on a bad id or mode, or an option that cannot combine with them."""
    if on_dependency_failure not in ("fail", "run"):
        raise ValueError(
            f'on_dependency_failure must be "fail" or "run", got {on_dependency_failure!r}'
        )
    if depends_on is None:
        return None
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, Sequence):
        raise TypeError("depends_on must be a list of operation ids")
    ids = list(dict.fromkeys(validate_operation_id(op_id) for op_id in depends_on))
    if not ids:
        raise ValueError("depends_on must name at least one operation id")
    if len(ids) > MAX_DEPENDENCIES:
        raise ValueError(f"depends_on names {len(ids)} operations; at most {MAX_DEPENDENCIES}")
    for name, value in refused.items():
        if value is not None and value is not False:
            raise ValueError(f"{name}= cannot be combined with depends_on")
    return ids


@dataclass(kw_only=True)
class DependentPlan:
    """The ``enqueue_dependent.lua`` call of one item, and the reading of its answer."""

    keys: list[str]
    args: list[Any]
    result: EnqueueResult
    #: The script the managers send it to (see :meth:`errors` and :meth:`read`).
    script: ClassVar[str] = "enqueue_dependent"

    @property
    def errors(self) -> AbstractContextManager[None]:
        """Its errors that are the caller's (see :func:`dependency_errors`)."""
        return dependency_errors()

    def read(self, answer: Sequence[bytes | str]) -> EnqueueResult:
        """Same as :meth:`interpret` (the name every enqueue's script call reads with)."""
        return self.interpret(answer)

    def interpret(self, answer: Sequence[bytes | str]) -> EnqueueResult:
        """``"queued"`` when stored to wait (or to run: every dependency had completed),
        ``"dependency_failed"`` when stored straight into ``failures`` (a dependency had
        already failed), ``"duplicate"`` with ``existing_status`` when the id is taken."""
        outcome, status = as_text(answer[0]), as_text(answer[1])
        if outcome == "duplicate":
            self.result["status"] = "duplicate"
            self.result["existing_status"] = status
        elif status == "failed":
            self.result["status"] = "dependency_failed"
        return self.result


def plan_dependent(
    config: QueueConfig,
    draft: EnqueueDraft,
    plan: EnqueuePlan,
    depends_on: list[str],
    on_dependency_failure: str,
) -> DependentPlan:
    """Turn a finished one-item enqueue ``plan`` (``draft`` encoded) into its dependent call."""
    (envelope,) = draft.envelopes
    op_id = envelope["id"]
    if op_id in depends_on:
        raise ValueError(f"operation {op_id} cannot depend on itself")
    keys = config.keys
    queue, max_queues, notify_cap, ttl, _count, priority, processor, now, nonce = plan.args[:9]
    data = plan.args[10]  # operation id, encoded item, dedup flag: see EnqueueDraft.finish
    script_keys = [
        keys.registry,
        keys.notify,
        keys.metrics,
        keys.queue(queue, priority),
        keys.ready,
        keys.operation(op_id),
        keys.waits_on(op_id),
        keys.failures,
    ]
    for dep in depends_on:
        script_keys += [keys.operation(dep), keys.dependents(dep)]
    args: list[Any] = [
        queue,
        max_queues,
        notify_cap,
        ttl,
        len(depends_on),
        priority,
        processor,
        now,
        nonce,
        op_id,
        data,
        on_dependency_failure,
        dependency_failure_head(dict(envelope), now),
        config.dead_letter_cap,
        *depends_on,
    ]
    return DependentPlan(keys=script_keys, args=args, result=plan.results[0])


@contextmanager
def dependency_errors() -> Iterator[None]:
    """An unknown dependency (no status record) is the caller's error: ValueError."""
    try:
        yield
    except redis.ResponseError as exc:
        text = str(exc)
        if UNKNOWN_DEPENDENCY in text:
            op_id = text.split(UNKNOWN_DEPENDENCY, 1)[1].strip()
            raise ValueError(
                f"depends_on names operation {op_id!r}, which is unknown (never enqueued, "
                "or ended and its record expired): nothing was stored"
            ) from exc
        raise
