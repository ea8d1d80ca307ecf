"""Metrics: this process's values, emitted as one JSON log record per update worth one.

:class:`Metrics` keeps this process's series (a name plus labels) and emits one
``"Queue metric update"`` record per update that :func:`queue_system.metrics.policy.should_log`
lets through. It never raises into the caller. Totals shared by every process live in Redis:
:mod:`queue_system.metrics.shared`. No Redis I/O happens in this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from queue_system.metrics.policy import METRIC_KINDS, MetricKind, infer_kind, should_log

#: Message of every metric record; dashboards filter on it.
RECORD_MESSAGE = "Queue metric update"


class MetricsContext(TypedDict, total=False):
    """Fields added to every metric record. Missing ones default at emit time."""

    worker_id: str
    host: str
    pid: int


@dataclass(kw_only=True)
class _Series:
    """One metric (one name + label set) in this process."""

    kind: MetricKind
    labelled: bool
    value: float | None = None
    samples: int = 0
    total: float = 0.0
    last_logged: float | None = None


def series_key(
    metric_name: str,
    queue: str | None = None,
    priority: str | None = None,
    processor: str | None = None,
) -> str:
    """Key of one series in :meth:`Metrics.snapshot`, e.g. ``processed{queue=a,priority=high}``."""
    labels = [
        f"{label}={value}"
        for label, value in (("queue", queue), ("priority", priority), ("processor", processor))
        if value is not None
    ]
    return f"{metric_name}{{{','.join(labels)}}}" if labels else metric_name


class Metrics:
    """This process's metrics, logged through ``logger`` as the event-driven policy allows.

    Each metric name plus label set (``queue``, ``priority``, ``processor``) is its own series,
    as in Prometheus, so "processed at high priority" crosses its own thresholds. Thread-safe.
    Totals shared by every process live in Redis; see :mod:`queue_system.metrics.shared`.

    Args:
        logger: where records go; default ``logging.getLogger("queue_system.metrics")``.
        context: ``worker_id``, ``host``, ``pid`` added to every record. ``host`` defaults to
            this machine's name, ``pid`` to the current process id (read at emit time, so a
            forked child reports its own), ``worker_id`` to ``"<host>:<pid>"``.

    Raises:
        ValueError: ``context`` has a key other than ``worker_id``, ``host``, ``pid``.
    """

    def __init__(
        self, logger: logging.Logger | None = None, context: MetricsContext | None = None
    ) -> None:
        self._logger = logger or logging.getLogger("queue_system.metrics")
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._context: MetricsContext = {"host": socket.gethostname()}
        self._failure_reported = False
        unknown = set(context or {}) - set(MetricsContext.__annotations__)
        if unknown:
            raise ValueError(f"context keys must be worker_id, host, pid; got {sorted(unknown)}")
        self.set_context(**(context or {}))

    def set_context(
        self, *, worker_id: str | None = None, host: str | None = None, pid: int | None = None
    ) -> None:
        """Set the context fields given (a worker calls this with its id once it has one)."""
        with self._lock:
            if worker_id is not None:
                self._context["worker_id"] = worker_id
            if host is not None:
                self._context["host"] = host
            if pid is not None:
                self._context["pid"] = pid

    def update(
        self,
        metric_name: str,
        value: float = 1,
        force_log: bool = False,
        *,
        kind: MetricKind | None = None,
        batch_size: int | None = None,
        duration_ms: float | None = None,
        queue: str | None = None,
        priority: str | None = None,
        processor: str | None = None,
        operation_id: str | None = None,
    ) -> None:
        """Apply one update and log it when :func:`should_log` says so. Never raises.

        Counters add ``value``. Averages take ``value`` as one sample and keep the running
        mean (sum / count). Gauges are set to ``value``; pass ``kind="gauge"`` for an average
        computed elsewhere. The first update of a series fixes its kind.

        Args:
            metric_name: e.g. ``"processed"``, ``"failed"``, ``"avg_process_time"``.
            value: the increment, sample or new value.
            force_log: always log this update.
            kind: how to apply ``value``; None infers it from the name (:func:`infer_kind`).
            batch_size: items in a batch operation; a batch update always logs.
            duration_ms: duration of the operation, added to the record.
            queue: series label and record field; so are ``priority`` and ``processor``.
            priority: see ``queue``.
            processor: see ``queue``.
            operation_id: record field only (one per item, so not a label).
        """
        labels = {"queue": queue, "priority": priority, "processor": processor}
        try:
            record = self._apply(metric_name, value, force_log, kind, batch_size, labels)
            if record is None or not self._logger.isEnabledFor(logging.INFO):
                return
            extra: dict[str, Any] = {
                "metric_name": metric_name,
                "metric_value": record[0],
                "previous_value": record[1],
            }
            optional = {
                **labels,
                "operation_id": operation_id,
                "batch_size": batch_size,
                "duration_ms": duration_ms,
            }
            extra.update((k, v) for k, v in optional.items() if v is not None)
            extra.update(self._context_fields())
            self._logger.info(RECORD_MESSAGE, extra=extra)
        except Exception as exc:
            # Metrics observe the work; a broken handler or a bad update must not stop it.
            self._report_failure(exc)

    def record_batch(
        self,
        name: str,
        size: int,
        duration_ms: float,
        *,
        queue: str | None = None,
        priority: str | None = None,
        processor: str | None = None,
        operation_id: str | None = None,
    ) -> None:
        """Add a batch of ``size`` items to counter ``name``, e.g. ``"enqueued"``; always logs.

        The record carries ``batch_size`` and ``duration_ms``; the keyword fields are those of
        :meth:`update`.
        """
        self.update(
            name,
            size,
            kind="counter",
            batch_size=size,
            duration_ms=duration_ms,
            queue=queue,
            priority=priority,
            processor=processor,
            operation_id=operation_id,
        )

    def snapshot(self) -> dict[str, float]:
        """A copy of this process's values, keyed by :func:`series_key`.

        Averages give their running mean; series without a value yet are left out.
        """
        with self._lock:
            return {k: s.value for k, s in self._series.items() if s.value is not None}

    def unlabelled(self) -> dict[str, float]:
        """This process's values of series without labels (``update_metric``'s), by name."""
        with self._lock:
            return {
                k: s.value
                for k, s in self._series.items()
                if not s.labelled and s.value is not None
            }

    def _apply(
        self,
        metric_name: str,
        value: float,
        force_log: bool,
        kind: MetricKind | None,
        batch_size: int | None,
        labels: Mapping[str, str | None],
    ) -> tuple[float, float | None] | None:
        """Update the series; return ``(value, previous)`` when it must be logged, else None."""
        wanted = kind or infer_kind(metric_name)
        if wanted not in METRIC_KINDS:
            raise ValueError(f"kind must be one of {METRIC_KINDS}, got {kind!r}")
        amount = float(value)
        key = series_key(metric_name, **labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = _Series(
                    kind=wanted,
                    labelled=any(v is not None for v in labels.values()),
                    value=0.0 if wanted == "counter" else None,
                )
                self._series[key] = series
            elif kind is not None and kind != series.kind:
                raise ValueError(f"metric {key!r} is a {series.kind}, not a {kind}")
            previous = series.value
            if series.kind == "counter":
                series.value = (previous or 0.0) + amount
            elif series.kind == "average":
                series.samples += 1
                series.total += amount
                series.value = series.total / series.samples
            else:
                series.value = amount
            current = series.value
            if not should_log(
                series.kind,
                metric_name,
                series.last_logged,
                current,
                force=force_log,
                batch=batch_size is not None,
            ):
                return None
            series.last_logged = current
            return current, previous

    def _context_fields(self) -> dict[str, str | int]:
        host = self._context.get("host") or socket.gethostname()
        pid = self._context.get("pid", os.getpid())
        worker_id = self._context.get("worker_id") or f"{host}:{pid}"
        return {"worker_id": worker_id, "host": host, "pid": pid}

    def _report_failure(self, exc: Exception) -> None:
        with self._lock:
            if self._failure_reported:
                return
            self._failure_reported = True
        # Report on the library logger, not the metric logger: the broken handler sits there.
        with contextlib.suppress(Exception):
            logging.getLogger("queue_system").warning(
                "metrics update failed; further failures are not reported: %r", exc
            )
