"""WorkerEvents: turns worker outcomes into metric updates (the event-driven JSON log records).

Shared totals live in Redis, written by the same scripts that change an item's state; these
are the process-local updates whose logging follows the policy in :mod:`queue_system.metrics.local`.
Successes are reported once per ack batch (aggregated per queue, priority and processor), so
the cost does not grow with each job. A failing observer never breaks processing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from queue_system.metrics.local import Metrics
from queue_system.worker.store import Completion

Labels = tuple[str, str, str]  # queue, priority, processor


class WorkerEvents:
    """Metric updates for one worker's outcomes."""

    def __init__(self, metrics: Metrics, worker_id: str) -> None:
        self.metrics = metrics
        self.jobs_done = 0
        self.jobs_failed = 0
        metrics.set_context(worker_id=worker_id)

    def acked(self, completions: list[Completion], acked: list[bool]) -> None:
        """A batch of successful runs was written (fenced ones excluded)."""
        groups: dict[Labels, list[Completion]] = defaultdict(list)
        for completion, ok in zip(completions, acked, strict=True):
            if ok:
                queue, _, priority = completion.queue_priority.rpartition(":")
                groups[(queue, priority, completion.processor)].append(completion)
        for labels, done in groups.items():
            count = len(done)
            self._update("processed", count, labels)
            self._update("succeeded", count, labels)
            self._update("avg_process_time", sum(c.run_ms for c in done) / count, labels)
            self._update("avg_wait_ms", sum(c.wait_ms for c in done) / count, labels)
            self.jobs_done += count
        if groups:
            self._success_rate()

    def retried(self, queue: str, priority: str, processor: str) -> None:
        """A failed run was scheduled for retry."""
        self._update("processed", 1, (queue, priority, processor))
        self._update("retried", 1, (queue, priority, processor))

    def failed(self, queue: str, priority: str, processor: str, operation_id: str) -> None:
        """Retries ran out: the item went to ``failures``."""
        self._update("processed", 1, (queue, priority, processor))
        self._update("failed", 1, (queue, priority, processor), operation_id)
        self.jobs_failed += 1
        self._success_rate()

    def system_error(self, envelope: dict[str, Any] | None) -> None:
        """An item could not be run: it went to ``system_errors``."""
        env = envelope or {}
        self.metrics.update(
            "system_errors",
            1,
            queue=_label(env.get("queue")),
            priority=_label(env.get("priority")),
            processor=_label(env.get("processor")),
            operation_id=_label(env.get("id")),
        )
        self.jobs_failed += 1
        self._success_rate()

    def script_error(self, script: str) -> None:
        """One of our scripts (or a command) got an error reply: a bug, counted loudly.

        ``script`` is named in the worker's ERROR record; the counter has no labels.
        """
        self.metrics.update("script_errors", 1)

    def _update(
        self, name: str, value: float, labels: Labels, operation_id: str | None = None
    ) -> None:
        queue, priority, processor = labels
        self.metrics.update(
            name,
            value,
            queue=queue,
            priority=priority,
            processor=None if name == "avg_wait_ms" else processor,
            operation_id=operation_id,
        )

    def _success_rate(self) -> None:
        finished = self.jobs_done + self.jobs_failed
        self.metrics.update("success_rate", 100.0 * self.jobs_done / finished, kind="gauge")


def _label(value: Any) -> str | None:
    return value if isinstance(value, str) else None
