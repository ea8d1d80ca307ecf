"""WorkerEvents: the built-in middleware that turns outcomes into metric updates.

Every worker puts it first in its hook chain (:mod:`queue_system.core.hooks`), so it sees
each outcome through ``after_process`` like any middleware. Shared totals live in Redis,
written by the same scripts that change an item's state; these are the process-local updates
whose logging follows the policy in :mod:`queue_system.metrics.local`. Successes arrive once
per ack batch (``after_process_batch``, aggregated per queue, priority and processor), so the
cost does not grow with each job. A failing observer never breaks processing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from queue_system.core.hooks import JobInfo, Outcome, meta_of
from queue_system.metrics.local import Metrics

Labels = tuple[str, str, str]  # queue, priority, processor


class WorkerEvents:
    """Metric updates for one worker's outcomes."""

    def __init__(self, metrics: Metrics, worker_id: str) -> None:
        self.metrics = metrics
        self.jobs_done = 0
        self.jobs_failed = 0
        metrics.set_context(worker_id=worker_id)

    def after_process_batch(self, pairs: Sequence[tuple[JobInfo, Outcome]]) -> None:
        """A batch of successful runs was acked (fenced ones are not in it)."""
        groups: dict[Labels, list[Outcome]] = defaultdict(list)
        for job, outcome in pairs:
            groups[(job.queue or "", job.priority or "", job.processor or "")].append(outcome)
        for labels, done in groups.items():
            count = len(done)
            self._update("processed", count, labels)
            self._update("succeeded", count, labels)
            self._update("avg_process_time", sum(o.duration_ms for o in done) / count, labels)
            self._update("avg_wait_ms", sum(o.wait_ms for o in done) / count, labels)
            self.jobs_done += count
        if groups:
            self._success_rate()

    def after_process(self, job: JobInfo, outcome: Outcome) -> None:
        """One outcome other than an acked batch: retried, failed or system error."""
        if outcome.status == "succeeded":
            self.after_process_batch([(job, outcome)])
        elif outcome.status == "retried":
            self.retried(job)
        elif outcome.status == "failed":
            self.failed(job)
        elif outcome.status == "system_error":
            self.system_error(job)

    def retried(self, job: JobInfo) -> None:
        """A failed run was scheduled for retry."""
        labels = (job.queue or "", job.priority or "", job.processor or "")
        self._update("processed", 1, labels)
        self._update("retried", 1, labels)

    def failed(self, job: JobInfo) -> None:
        """Retries ran out: the item went to ``failures``."""
        labels = (job.queue or "", job.priority or "", job.processor or "")
        self._update("processed", 1, labels)
        self._update("failed", 1, labels, job.operation_id)
        self.jobs_failed += 1
        self._success_rate()

    def system_error(self, job: JobInfo) -> None:
        """An item could not be run: it went to ``system_errors``."""
        self.metrics.update(
            "system_errors",
            1,
            queue=job.queue,
            priority=job.priority,
            processor=job.processor,
            operation_id=job.operation_id,
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


def job_of(envelope: dict[str, Any] | None) -> JobInfo:
    """A JobInfo for an (untrusted, maybe partial) envelope: unreadable fields are None."""
    env = envelope or {}
    attempts = env.get("attempts")
    return JobInfo(
        operation_id=_label(env.get("id")),
        queue=_label(env.get("queue")),
        priority=_label(env.get("priority")),
        processor=_label(env.get("processor")),
        attempt=attempts + 1 if isinstance(attempts, int) and not isinstance(attempts, bool) else 1,
        entity=env.get("entity"),
        meta=meta_of(env),
    )
