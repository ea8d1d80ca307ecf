"""Metrics (process-local values and their records) and compute_metrics (shared totals)."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from queue_system.logs import setup_json_logging
from queue_system.metrics import local as metrics_module
from queue_system.metrics.local import RECORD_MESSAGE, Metrics, series_key
from queue_system.metrics.shared import (
    compute_metrics,
    processed_field,
    tier_field,
    wait_count_field,
    wait_total_field,
)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class BrokenHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("log shipper down")


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of this test's own, so records from other tests never mix in."""
    log = logging.getLogger(f"test.metrics.{uuid.uuid4().hex}")
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


@pytest.fixture
def captured(logger: logging.Logger) -> ListHandler:
    handler = ListHandler()
    logger.addHandler(handler)
    return handler


def values(handler: ListHandler) -> list[float]:
    return [r.__dict__["metric_value"] for r in handler.records]


# --- Metrics: values -------------------------------------------------------------------------


def test_counter_adds_values(logger: logging.Logger) -> None:
    metrics = Metrics(logger)
    metrics.update("processed")
    metrics.update("processed", 4)
    assert metrics.snapshot() == {"processed": 5.0}


def test_average_keeps_running_mean(logger: logging.Logger) -> None:
    metrics = Metrics(logger)
    for sample in (10.0, 20.0, 60.0):
        metrics.update("avg_process_time", sample)
    assert metrics.snapshot() == {"avg_process_time": 30.0}


def test_gauge_is_set(logger: logging.Logger) -> None:
    metrics = Metrics(logger)
    metrics.update("success_rate", 90.0)
    metrics.update("success_rate", 95.0)
    metrics.update("depth", 7, kind="gauge")
    metrics.update("depth", 3, kind="gauge")
    assert metrics.snapshot() == {"success_rate": 95.0, "depth": 3.0}


def test_each_label_set_is_its_own_series(logger: logging.Logger) -> None:
    metrics = Metrics(logger)
    metrics.update("processed", queue="emails", priority="high")
    metrics.update("processed", queue="emails", priority="high")
    metrics.update("processed", queue="emails", priority="low")
    metrics.update("failed", processor="send_email")
    assert metrics.snapshot() == {
        "processed{queue=emails,priority=high}": 2.0,
        "processed{queue=emails,priority=low}": 1.0,
        "failed{processor=send_email}": 1.0,
    }
    assert series_key("processed", priority="low") == "processed{priority=low}"


def test_snapshot_is_a_copy(logger: logging.Logger) -> None:
    metrics = Metrics(logger)
    metrics.update("processed")
    metrics.snapshot()["processed"] = 99.0
    assert metrics.snapshot() == {"processed": 1.0}


# --- Metrics: records ------------------------------------------------------------------------


def test_counter_logs_only_where_the_policy_says(
    logger: logging.Logger, captured: ListHandler
) -> None:
    metrics = Metrics(logger)
    for _ in range(120):
        metrics.update("processed")
    assert values(captured) == [1, 2, 3, 4, 5, 10, 100]


def test_error_metric_logs_every_increment(logger: logging.Logger, captured: ListHandler) -> None:
    metrics = Metrics(logger)
    for _ in range(30):
        metrics.update("failed", processor="send_email")
    assert values(captured) == list(range(1, 31))


def test_average_logs_on_moves_over_ten_percent(
    logger: logging.Logger, captured: ListHandler
) -> None:
    metrics = Metrics(logger)
    metrics.update("avg_wait_ms", 100.0)  # first: logs
    metrics.update("avg_wait_ms", 110.0)  # mean 105, +5 %: no
    metrics.update("avg_wait_ms", 150.0)  # mean 120, +20 % from 100: logs
    assert values(captured) == [100.0, 120.0]


def test_record_fields(logger: logging.Logger, captured: ListHandler) -> None:
    metrics = Metrics(logger, context={"worker_id": "w-1", "host": "box", "pid": 42})
    metrics.update(
        "processed",
        queue="emails",
        priority="high",
        processor="send_email",
        operation_id="op-1",
        duration_ms=12.5,
    )
    (record,) = captured.records
    assert record.getMessage() == RECORD_MESSAGE == "Queue metric update"
    assert record.levelno == logging.INFO
    fields = {
        k: record.__dict__.get(k)
        for k in (
            "metric_name",
            "metric_value",
            "previous_value",
            "queue",
            "priority",
            "processor",
            "operation_id",
            "duration_ms",
            "worker_id",
            "host",
            "pid",
        )
    }
    assert fields == {
        "metric_name": "processed",
        "metric_value": 1.0,
        "previous_value": 0.0,
        "queue": "emails",
        "priority": "high",
        "processor": "send_email",
        "operation_id": "op-1",
        "duration_ms": 12.5,
        "worker_id": "w-1",
        "host": "box",
        "pid": 42,
    }
    assert "batch_size" not in record.__dict__  # fields not given are left out


def test_previous_value_is_the_value_before_the_update(
    logger: logging.Logger, captured: ListHandler
) -> None:
    metrics = Metrics(logger)
    for _ in range(10):
        metrics.update("processed")
    assert captured.records[-1].__dict__["previous_value"] == 9.0


def test_context_defaults(logger: logging.Logger, captured: ListHandler) -> None:
    metrics = Metrics(logger)
    metrics.update("processed")
    record = captured.records[0].__dict__
    host, pid = socket.gethostname(), os.getpid()
    assert (record["host"], record["pid"], record["worker_id"]) == (host, pid, f"{host}:{pid}")


def test_set_context_changes_later_records(logger: logging.Logger, captured: ListHandler) -> None:
    metrics = Metrics(logger)
    metrics.set_context(worker_id="worker-7")
    metrics.update("processed")
    assert captured.records[0].__dict__["worker_id"] == "worker-7"


def test_unknown_context_key_is_rejected(logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="context keys"):
        Metrics(logger, context={"worker": "w"})  # type: ignore[arg-type]


def test_force_log_logs_an_update_the_policy_skips(
    logger: logging.Logger, captured: ListHandler
) -> None:
    metrics = Metrics(logger)
    for _ in range(7):
        metrics.update("processed")
    metrics.update("processed", 1, True)
    assert values(captured) == [1, 2, 3, 4, 5, 8]


def test_record_batch_always_logs_size_and_duration(
    logger: logging.Logger, captured: ListHandler
) -> None:
    metrics = Metrics(logger)
    metrics.record_batch("enqueued", 20, 3.5, queue="emails")
    metrics.record_batch("enqueued", 20, 4.0, queue="emails")  # 20 -> 40: no boundary
    assert values(captured) == [20.0, 40.0]
    last = captured.records[-1].__dict__
    assert (last["batch_size"], last["duration_ms"], last["previous_value"]) == (20, 4.0, 20.0)
    assert metrics.snapshot() == {"enqueued{queue=emails}": 40.0}


def test_disabled_logger_still_counts(logger: logging.Logger, captured: ListHandler) -> None:
    logger.setLevel(logging.WARNING)
    metrics = Metrics(logger)
    metrics.update("processed")
    assert captured.records == []
    assert metrics.snapshot() == {"processed": 1.0}


def test_record_as_json_line(logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_json_logging("INFO", stream, logger.name)
    Metrics(logger, context={"worker_id": "w-1"}).update("failed", processor="p")
    line = json.loads(stream.getvalue())
    assert line["message"] == "Queue metric update"
    assert (line["metric_name"], line["metric_value"], line["processor"]) == ("failed", 1.0, "p")
    assert line["worker_id"] == "w-1"


# --- Metrics: failures never propagate -------------------------------------------------------


def test_broken_handler_is_reported_once_and_counting_goes_on(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    logger.addHandler(BrokenHandler())
    metrics = Metrics(logger)
    with caplog.at_level(logging.WARNING, logger="queue_system"):
        for _ in range(3):
            metrics.update("failed")
    warnings = [r for r in caplog.records if r.name == "queue_system"]
    assert len(warnings) == 1
    assert "log shipper down" in warnings[0].getMessage()
    assert metrics.snapshot() == {"failed": 3.0}


def test_bad_update_is_reported_not_raised(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(logger)
    metrics.update("processed")
    with caplog.at_level(logging.WARNING, logger="queue_system"):
        metrics.update("processed", "lots")  # type: ignore[arg-type]
        metrics.update("processed", kind="gauge")  # a counter already
    assert len([r for r in caplog.records if r.name == "queue_system"]) == 1
    assert metrics.snapshot() == {"processed": 1.0}


def test_reporting_logger_broken_too(caplog: pytest.LogCaptureFixture) -> None:
    # Given the default logger (which also reports failures) has a handler that raises
    default = logging.getLogger("queue_system.metrics")
    broken = BrokenHandler()
    default.addHandler(broken)
    try:
        metrics = Metrics()
        # When updates are logged, Then nothing propagates and the values are kept
        with caplog.at_level(logging.INFO, logger="queue_system.metrics"):
            metrics.update("failed")
            metrics.update("failed")
    finally:
        default.removeHandler(broken)
    assert metrics.snapshot() == {"failed": 2.0}


# --- Metrics: threads ------------------------------------------------------------------------


def test_concurrent_updates_count_and_log_each_boundary_once(
    logger: logging.Logger, captured: ListHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide = metrics_module.should_log

    def yielding_should_log(*args: Any, **kwargs: Any) -> bool:
        os.sched_yield()  # widen the read-decide-write window an unlocked update would race in
        return decide(*args, **kwargs)

    monkeypatch.setattr(metrics_module, "should_log", yielding_should_log)
    metrics = Metrics(logger)
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(1_000):
            metrics.update("processed")

    threads = [threading.Thread(target=work) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unlocked update would race
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert metrics.snapshot() == {"processed": 8_000.0}
    assert sorted(values(captured)) == [1, 2, 3, 4, 5, 10, 100, 1_000]


# --- compute_metrics -------------------------------------------------------------------------


def test_compute_metrics_empty() -> None:
    assert compute_metrics({}) == {
        "enqueued": 0,
        "processed": 0,
        "succeeded": 0,
        "failed": 0,
        "retried": 0,
        "system_errors": 0,
        "expired": 0,
        "cancelled": 0,
        "success_rate": 0.0,
        "avg_process_time": 0.0,
        "queues": {},
    }


def test_compute_metrics_totals_and_rates() -> None:
    result = compute_metrics(
        {
            "enqueued": 120.0,
            "processed": 100.0,
            "succeeded": 90.0,
            "failed": 8.0,
            "system_errors": 2.0,
            "retried": 5.0,
            "process_time_ms_total": 2_500.0,
        }
    )
    counts = {k: result[k] for k in ("enqueued", "processed", "failed", "retried")}
    assert counts == {"enqueued": 120, "processed": 100, "failed": 8, "retried": 5}
    assert all(isinstance(result[k], int) for k in counts)
    assert result["success_rate"] == pytest.approx(90.0)
    assert result["avg_process_time"] == pytest.approx(25.0)


def test_success_rate_counts_system_errors_as_unsuccessful() -> None:
    result = compute_metrics({"succeeded": 3, "system_errors": 1})
    assert result["success_rate"] == pytest.approx(75.0)


def test_compute_metrics_per_queue_and_priority() -> None:
    counters = {
        wait_total_field("emails", "high"): 300.0,
        wait_count_field("emails", "high"): 3.0,
        processed_field("emails", "high"): 3.0,
        wait_total_field("billing:eu", "low"): 50.0,
        wait_count_field("billing:eu", "low"): 2.0,
        processed_field("billing:eu", "low"): 2.0,
        tier_field("succeeded", "emails", "high"): 2.0,
        tier_field("failed", "emails", "high"): 1.0,
        tier_field("system_errors", "billing:eu", "low"): 2.0,
    }
    depths = {"emails:high": 4, "emails:normal": 0, "billing:eu:low": 1}
    none = dict.fromkeys(("enqueued", "succeeded", "failed", "retried", "system_errors"), 0)
    assert compute_metrics(counters, depths)["queues"] == {
        "emails": {
            "high": {
                "depth": 4,
                "avg_wait_ms": 100.0,
                "processed": 3,
                **none,
                "succeeded": 2,
                "failed": 1,
            },
            "normal": {"depth": 0, "avg_wait_ms": 0.0, "processed": 0, **none},
        },
        "billing:eu": {
            "low": {"depth": 1, "avg_wait_ms": 25.0, "processed": 2, **none, "system_errors": 2}
        },
    }


def test_field_names_match_the_lua_scripts() -> None:
    assert wait_total_field("emails", "high") == "wait_ms_total:emails:high"
    assert wait_count_field("emails", "high") == "wait_count:emails:high"
    assert processed_field("emails", "high") == "processed:emails:high"
