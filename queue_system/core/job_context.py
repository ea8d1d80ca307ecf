"""The job context: what a running processor can learn about its own item. Pure; no I/O.

A worker sets it (a ``contextvars`` variable) around each processor call: an async processor
reads it on the event loop, a sync one in its pool thread (the worker runs it with a copy of
the context). :func:`current_job` outside a processor raises :class:`NoJobContextError`:
a helper that may also run outside a job asks :func:`job_or_none` instead.

Progress is handed to a sink the worker supplies (it writes it to the item's status record in
the background, latest value wins); this module only checks and encodes it.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Mapping
from typing import Any

from queue_system.errors import NoJobContextError

#: Largest progress value stored (bytes of its JSON): progress is a small status, not a result.
MAX_PROGRESS_BYTES = 4096

_CURRENT: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "queue_system_job", default=None
)


class JobContext:
    """The running item, as its processor sees it (``queue_system.current_job()``).

    Attributes (read-only):
        operation_id: the operation's id.
        attempt: this run's number, 1 for the first run (retries count up).
        queue: the queue name. priority: ``"high"``, ``"normal"`` or ``"low"``.
        enqueued_at: when the item (or its retry) became due, epoch seconds.
        deadline: when this run times out, epoch seconds (start + the item's timeout).
        cancelled: True once a cancel of this operation was requested.
    """

    # A plain class with slots, reading the envelope lazily: the worker builds one per item
    # on its hot path, and most processors never look at it.
    __slots__ = ("_cancelled", "_envelope", "_progress_sink", "deadline")

    def __init__(
        self,
        envelope: Mapping[str, Any],
        deadline: float,
        progress_sink: Callable[[str], None] | None = None,
    ) -> None:
        self._envelope = envelope
        self.deadline = deadline
        self._progress_sink = progress_sink
        # A plain flag: set once by the worker's loop, read by the processor's thread (a bool
        # store is atomic; an Event would cost a lock per item).
        self._cancelled = False

    def __repr__(self) -> str:
        return f"JobContext(operation_id={self.operation_id!r}, attempt={self.attempt})"

    @property
    def operation_id(self) -> str:
        return str(self._envelope["id"])

    @property
    def attempt(self) -> int:
        return int(self._envelope["attempts"]) + 1

    @property
    def queue(self) -> str:
        return str(self._envelope["queue"])

    @property
    def priority(self) -> str:
        return str(self._envelope["priority"])

    @property
    def enqueued_at(self) -> float:
        return float(self._envelope["enqueued_at"])

    @property
    def cancelled(self) -> bool:
        """True once a cancel of this operation was requested: a sync processor should stop
        soon (its result is discarded anyway); an async one is cancelled by the worker."""
        return self._cancelled

    def request_cancel(self) -> None:
        """Mark the job cancelled (called by the worker; safe from any thread)."""
        self._cancelled = True

    def update_progress(self, value: Any) -> None:
        """Report progress (a number, a string or a JSON dict), shown by ``get_operation``,
        ``queue-system job ID`` and ``monitor``. Does not block: the worker writes the latest
        value in the background. Raises ``ValueError`` if it is not JSON or over
        ``MAX_PROGRESS_BYTES``."""
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"progress must be JSON-serializable: {exc}") from exc
        if len(text.encode()) > MAX_PROGRESS_BYTES:
            raise ValueError(f"progress is over {MAX_PROGRESS_BYTES} bytes of JSON")
        if self._progress_sink is not None:
            self._progress_sink(text)


def current_job() -> JobContext:
    """The job the calling processor runs. Raises :class:`NoJobContextError` outside one."""
    job = _CURRENT.get()
    if job is None:
        raise NoJobContextError(
            "current_job() is only available inside a processor run by a QueueWorker"
        )
    return job


def job_or_none() -> JobContext | None:
    """The job the caller runs, or None outside a processor."""
    return _CURRENT.get()


def enter_job(job: JobContext) -> contextvars.Token[JobContext | None]:
    """Make ``job`` current in this context; undo with :func:`leave_job`."""
    return _CURRENT.set(job)


def leave_job(token: contextvars.Token[JobContext | None]) -> None:
    """Undo :func:`enter_job`."""
    _CURRENT.reset(token)
