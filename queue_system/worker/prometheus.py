"""PrometheusMiddleware: this worker process's run and wait time histograms (``[prometheus]``).

The shared counters (:mod:`queue_system.ops.prometheus`) say how many items ran; only the
process that ran an item knows how long it took, so these come from each worker process:

- ``queue_system_run_seconds{queue,priority}`` (histogram): how long the processor ran, for
  runs that ended ``succeeded``, ``retried`` or ``failed``;
- ``queue_system_wait_seconds{queue,priority}`` (histogram): how long the item waited in its
  queue before that run (same runs);
- ``queue_system_outcomes_total{queue,priority,status}`` (counter): every outcome this process
  saw, ``status`` one of :data:`~queue_system.core.hooks.OutcomeStatus`.

Labels are bounded: queue names come from the registry (``max_queues``), three tiers, six
statuses; an undecodable item counts under ``queue=""``. Each process exposes its own series
(``queue-system worker --metrics-port``; with ``--processes N`` child ``i`` serves ``PORT+i``):
Prometheus adds the ``instance`` label, and ``sum by (queue)`` aggregates.

Why a custom collector rather than ``prometheus_client.Histogram``: acked successes arrive a
batch at a time (``after_process_batch``), and plain lists updated under one lock per batch
cost about 1.1 us per item for both histograms and the counter, where one
``Histogram.labels(...).observe`` alone costs about 2.4 us (measured here); a drain spends
about 150 us of worker CPU per item (``bench/bench.py``, "prometheus cost" row).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "worker metrics need the [prometheus] extra: pip install 'queue_system[prometheus]'"
    ) from exc

from queue_system.core.hooks import JobInfo, Outcome

#: Upper bounds (seconds) of the run time buckets; +Inf is added.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Upper bounds (seconds) of the wait time buckets; +Inf is added.
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_RAN = frozenset({"succeeded", "retried", "failed"})  # outcomes whose processor ran

Labels = tuple[str, str]  # queue, priority


class _Histogram:
    """Bucket counts (not cumulative) and a sum, in milliseconds, for one label set."""

    __slots__ = ("bounds_ms", "counts", "sum_ms")

    def __init__(self, bounds_ms: list[float]) -> None:
        self.bounds_ms = bounds_ms
        self.counts = [0] * (len(bounds_ms) + 1)  # the last is +Inf
        self.sum_ms = 0

    def observe(self, value_ms: int) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "less or equal").
        self.counts[bisect_left(self.bounds_ms, value_ms)] += 1
        self.sum_ms += value_ms


def _bounds(buckets: Sequence[float]) -> list[float]:
    bounds = sorted(float(b) for b in buckets if not math.isinf(b))
    if not bounds or bounds[0] <= 0 or len(set(bounds)) != len(bounds):
        raise ValueError(f"buckets must be distinct positive seconds, got {buckets!r}")
    return bounds


class PrometheusMiddleware(Collector):
    """Worker middleware recording run/wait histograms and outcome counts for Prometheus.

    Add it to the config (``config.add_middleware(PrometheusMiddleware())``) and serve
    :attr:`registry` (``prometheus_client.start_http_server(port, registry=mw.registry)``), or
    let ``queue-system worker --metrics-port`` do both.

    Args:
        registry: where to register (default: a new ``CollectorRegistry`` of its own, so the
            worker's series never mix with the process's default registry by accident).
        run_buckets: upper bounds in seconds of the run time histogram (+Inf is added).
        wait_buckets: the same for the wait time histogram.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        run_buckets: Sequence[float] = RUN_BUCKETS,
        wait_buckets: Sequence[float] = WAIT_BUCKETS,
    ) -> None:
        run_s, wait_s = _bounds(run_buckets), _bounds(wait_buckets)
        self._run_le = [*run_s, math.inf]
        self._wait_le = [*wait_s, math.inf]
        self._run_ms = [b * 1000.0 for b in run_s]  # outcomes carry whole milliseconds
        self._wait_ms = [b * 1000.0 for b in wait_s]
        self._run: dict[Labels, _Histogram] = {}
        self._wait: dict[Labels, _Histogram] = {}
        self._outcomes: dict[tuple[str, str, str], int] = {}
        # Hooks run on the worker's event loop, scrapes on the HTTP server's thread: one
        # lock per batch keeps a scrape's buckets, sum and count from the same moment.
        self._lock = threading.Lock()
        self.registry = CollectorRegistry() if registry is None else registry
        self.registry.register(self)

    def after_process_batch(self, pairs: Sequence[tuple[JobInfo, Outcome]]) -> None:
        """Record a batch of acked successes (one lock for the batch)."""
        with self._lock:
            for job, outcome in pairs:
                self._record(job, outcome)

    def after_process(self, job: JobInfo, outcome: Outcome) -> None:
        """Record one outcome (retried, failed, system error, expired, cancelled...)."""
        with self._lock:
            self._record(job, outcome)

    def _record(self, job: JobInfo, outcome: Outcome) -> None:
        labels = (job.queue or "", job.priority or "")
        key = (labels[0], labels[1], outcome.status)
        self._outcomes[key] = self._outcomes.get(key, 0) + 1
        if outcome.status not in _RAN:
            return
        run = self._run.get(labels)
        if run is None:
            run = self._run[labels] = _Histogram(self._run_ms)
            self._wait[labels] = _Histogram(self._wait_ms)
        run.observe(outcome.duration_ms)
        self._wait[labels].observe(outcome.wait_ms)

    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        """The current values (called by the registry at each scrape)."""
        with self._lock:  # copy under the lock, format outside it
            run = {k: (list(h.counts), h.sum_ms) for k, h in self._run.items()}
            wait = {k: (list(h.counts), h.sum_ms) for k, h in self._wait.items()}
            outcomes = dict(self._outcomes)
        yield _histogram(
            "queue_system_run_seconds", "Run time of the processor, per run.", run, self._run_le
        )
        yield _histogram(
            "queue_system_wait_seconds",
            "Time an item waited in its queue before a run.",
            wait,
            self._wait_le,
        )
        family = CounterMetricFamily(
            "queue_system_outcomes",
            "Outcomes of the runs of this worker process, by status.",
            labels=["queue", "priority", "status"],
        )
        for labels, count in sorted(outcomes.items()):
            family.add_metric(list(labels), float(count))
        yield family


def _histogram(
    name: str,
    doc: str,
    series: dict[Labels, tuple[list[int], int]],
    upper: list[float],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["queue", "priority"])
    for labels, (counts, sum_ms) in sorted(series.items()):
        cumulative, buckets = 0, []
        for bound, count in zip(upper, counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), float(cumulative)))
        family.add_metric(list(labels), buckets, sum_value=sum_ms / 1000.0)
    return family
