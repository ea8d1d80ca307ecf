"""Prometheus exposition of the shared state: a collector read at each scrape.

Needs the ``[prometheus]`` extra (``prometheus-client``). Every figure comes from Redis, so any
process (the dashboard, ``queue-system metrics``) exposes the same numbers for the namespace.
One scrape costs one health snapshot (see :mod:`queue_system.ops.health`: O(queues + in
flight + delayed + dead letters), waiting items only counted) plus one HGETALL of the counters.

Metric names (labels bounded by the queue registry, ``max_queues``, and the three tiers):

- gauges: ``queue_system_up``, ``queue_system_waiting{queue,priority}``,
  ``queue_system_in_flight{queue}``, ``queue_system_scheduled{queue}``,
  ``queue_system_dead_letters{queue,list}`` (``list``: ``failures`` or ``system_errors``),
  ``queue_system_oldest_age_seconds{queue}``, ``queue_system_workers_live``,
  ``queue_system_workers_busy``;
- counters (the shared counters): ``queue_system_{enqueued,processed,succeeded,failed,retried,
  system_errors}_total``, ``queue_system_process_seconds_total``, and per queue x priority
  ``queue_system_queue_processed_total`` and ``queue_system_queue_wait_seconds_total``;
- per queue x priority (``{queue,priority}``): counters ``queue_system_queue_{enqueued,
  succeeded,failed,retried,system_errors}_total`` and the gauge
  ``queue_system_queue_oldest_age_seconds`` (a tier with no readable item has no sample).
  They are families of their own, with the ``queue_`` prefix of the per-tier families above:
  one name never mixes labelled and unlabelled series, so ``sum()`` over a family never
  counts an item twice, and the global families keep their names for existing alerts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from queue_system.config import QueueConfig
from queue_system.core.envelope import as_text
from queue_system.core.types import PRIORITIES
from queue_system.metrics.shared import (
    COUNTER_FIELDS,
    PROCESS_TIME_MS_TOTAL,
    TIER_COUNTERS,
    processed_field,
    tier_field,
    wait_total_field,
)
from queue_system.ops.health import health_client, system_health

NAMESPACE = "queue_system"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_COUNTER_HELP = {
    "enqueued": "Items stored by producers.",
    "processed": "Runs that ended (succeeded, failed, retried or system error).",
    "succeeded": "Items whose processor returned.",
    "failed": "Items that exhausted their retries (now in failures).",
    "retried": "Failed runs scheduled to run again.",
    "system_errors": "Items that could not be run (now in system_errors).",
    "expired": "Items whose expires= passed before a worker started them (never run).",
    "cancelled": "Items cancelled (before they ran, or stopped while running).",
}


class QueueSystemCollector(Collector):
    """Reads the namespace of ``config`` at each scrape (register it on a registry)."""

    def __init__(self, config: QueueConfig) -> None:
        self.config = config

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        health = system_health(self.config)
        up = GaugeMetricFamily(f"{NAMESPACE}_up", "1 when Redis answered this scrape.")
        up.add_metric([], 1.0 if health["redis_connected"] else 0.0)
        yield up
        if not health["redis_connected"]:
            return
        waiting = _gauge("waiting", "Items waiting, per queue and tier.", ["queue", "priority"])
        in_flight = _gauge("in_flight", "Items leased by a worker now.", ["queue"])
        scheduled = _gauge("scheduled", "Items waiting for a retry or a due time.", ["queue"])
        dead = _gauge("dead_letters", "Records in failures / system_errors.", ["queue", "list"])
        oldest = _gauge("oldest_age_seconds", "Age of the oldest waiting item.", ["queue"])
        tier_oldest = _gauge(
            "queue_oldest_age_seconds",
            "Age of the oldest waiting item, per queue and tier.",
            ["queue", "priority"],
        )
        for name, stats in sorted(health["queue_stats"].items()):
            for priority in PRIORITIES:
                waiting.add_metric([name, priority], float(stats[priority]))
            in_flight.add_metric([name], float(stats["in_flight"]))
            scheduled.add_metric([name], float(stats["scheduled_jobs"]))
            dead.add_metric([name, "failures"], float(stats["failed_jobs"]))
            dead.add_metric([name, "system_errors"], float(stats["system_errors"]))
            if stats["oldest_age_s"] is not None:
                oldest.add_metric([name], float(stats["oldest_age_s"]))
            for priority, age in stats["oldest_age_by_priority"].items():
                if age is not None:
                    tier_oldest.add_metric([name, priority], float(age))
        yield from (waiting, in_flight, scheduled, dead, oldest, tier_oldest)
        workers = health["workers"] or {"count": 0, "active": 0}
        live = _gauge("workers_live", "Workers with a heartbeat in the last 30 s.", [])
        live.add_metric([], float(workers["count"]))
        busy = _gauge("workers_busy", "Live workers running at least one item.", [])
        busy.add_metric([], float(workers["active"]))
        yield from (live, busy)
        yield from self._counters(sorted(health["queue_stats"]))

    def _counters(self, queues: list[str]) -> Iterator[CounterMetricFamily]:
        client = health_client(self.config)
        try:
            raw = cast("dict[bytes, bytes]", client.hgetall(self.config.keys.metrics))
        finally:
            client.close()
        counters = {as_text(k): float(v) for k, v in raw.items()}
        for field in COUNTER_FIELDS:
            family = CounterMetricFamily(f"{NAMESPACE}_{field}", _COUNTER_HELP[field])
            family.add_metric([], counters.get(field, 0.0))
            yield family
        run = CounterMetricFamily(
            f"{NAMESPACE}_process_seconds", "Run time of every processed item, summed."
        )
        run.add_metric([], counters.get(PROCESS_TIME_MS_TOTAL, 0.0) / 1000)
        yield run
        labels = ["queue", "priority"]
        processed = CounterMetricFamily(
            f"{NAMESPACE}_queue_processed", "Runs that ended, per queue and tier.", labels=labels
        )
        waited = CounterMetricFamily(
            f"{NAMESPACE}_queue_wait_seconds",
            "Time items waited before they started, summed, per queue and tier.",
            labels=labels,
        )
        outcomes = {
            counter: CounterMetricFamily(
                f"{NAMESPACE}_queue_{counter}",
                f"{_COUNTER_HELP[counter]} Per queue and tier.",
                labels=labels,
            )
            for counter in TIER_COUNTERS
        }
        for name in queues:
            for priority in PRIORITIES:
                processed.add_metric(
                    [name, priority], counters.get(processed_field(name, priority), 0.0)
                )
                waited.add_metric(
                    [name, priority], counters.get(wait_total_field(name, priority), 0.0) / 1000
                )
                for counter, family in outcomes.items():
                    value = counters.get(tier_field(counter, name, priority), 0.0)
                    family.add_metric([name, priority], value)
        yield from (processed, waited)
        yield from outcomes.values()


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=labels)


def make_registry(config: QueueConfig) -> CollectorRegistry:
    """A registry holding only the queue_system collector for ``config``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueSystemCollector(config))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format of one scrape of ``registry``."""
    return generate_latest(registry)
