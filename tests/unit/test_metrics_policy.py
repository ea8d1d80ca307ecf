"""The event-driven logging policy: which updates log and which do not, rule by rule."""

from __future__ import annotations

import pytest

from queue_system.metrics.policy import (
    AVERAGE_CHANGE_PERCENT,
    LARGE_COUNTER_MIN,
    LARGE_COUNTER_STEP_PERCENT,
    SMALL_COUNTER_MAX,
    MetricKind,
    infer_kind,
    is_error_metric,
    should_log,
)

# (kind, metric name, last logged value, current value, expected)
CASES: list[tuple[MetricKind, str, float | None, float, bool]] = [
    # First observation of any metric logs.
    ("counter", "processed", None, 1, True),
    ("counter", "processed", None, 50_000, True),
    ("average", "avg_process_time", None, 12.0, True),
    ("gauge", "success_rate", None, 100.0, True),
    # Error metrics: every change, never an unchanged value, whatever the size.
    ("counter", "failed", 7, 8, True),
    ("counter", "failed", 8, 8, False),
    ("counter", "system_errors", 12_345, 12_346, True),
    ("counter", "system_errors", 12_345, 12_345, False),
    ("counter", "errors", 40, 41, True),
    ("counter", "decode_error", 3_000, 3_001, True),
    ("counter", "callback_errors", 999, 1_000, True),
    ("counter", "callback_errors", 999, 999, False),
    ("counter", "jobs_failed", 20_000, 20_001, True),
    # Small counters (0-5): every increment.
    ("counter", "processed", 0, 1, True),
    ("counter", "processed", 1, 2, True),
    ("counter", "processed", 4, 5, True),
    ("counter", "processed", 3, 3, False),
    # Medium counters (6 <= value < 10,000): only when a 10/100/1000 boundary is crossed.
    ("counter", "processed", 5, 6, False),
    ("counter", "processed", 5, 9, False),
    ("counter", "processed", 9, 10, True),
    ("counter", "processed", 10, 11, False),
    ("counter", "processed", 10, 99, False),
    ("counter", "processed", 99, 100, True),
    ("counter", "processed", 100, 999, False),
    ("counter", "processed", 999, 1_000, True),
    ("counter", "processed", 1_000, 9_999, False),
    ("counter", "processed", 8, 13, True),  # jumped over 10
    ("counter", "processed", 3, 8, False),  # left the small range without crossing 10
    ("counter", "processed", 150, 12, True),  # a reset is a crossing too
    # Large counters (>= 10,000): entering the range, then every 10 % of growth.
    ("counter", "processed", 1_000, 10_000, True),
    ("counter", "processed", 10_000, 10_999, False),  # +9.99 %
    ("counter", "processed", 10_000, 10_990, False),  # +9.9 %
    ("counter", "processed", 10_000, 11_000, True),  # +10 %
    ("counter", "processed", 50_000, 54_999, False),
    ("counter", "processed", 50_000, 55_000, True),
    ("counter", "processed", 99_999, 100_000, False),  # decades no longer matter here
    ("counter", "processed", 20_000, 5, True),  # reset to a small value
    # Averages and gauges: when they move by more than 10 %.
    ("average", "avg_process_time", 100.0, 109.0, False),  # +9 %
    ("average", "avg_process_time", 100.0, 110.0, False),  # exactly 10 % is not "more than"
    ("average", "avg_process_time", 100.0, 111.0, True),  # +11 %
    ("average", "avg_process_time", 100.0, 91.0, False),  # -9 %
    ("average", "avg_process_time", 100.0, 89.0, True),  # -11 %
    ("average", "avg_wait_ms", 0.0, 0.0, False),
    ("average", "avg_wait_ms", 0.0, 0.5, True),  # any move away from zero
    ("gauge", "success_rate", 95.0, 100.0, False),  # +5.3 %
    ("gauge", "success_rate", 95.0, 80.0, True),  # -15.8 %
    ("gauge", "queue_depth", 3.0, 3.0, False),
]


@pytest.mark.parametrize(("kind", "name", "last_logged", "current", "expected"), CASES)
def test_policy_table(
    kind: MetricKind, name: str, last_logged: float | None, current: float, expected: bool
) -> None:
    assert should_log(kind, name, last_logged, current) is expected


@pytest.mark.parametrize(
    ("kind", "name", "last_logged", "current"),
    [
        ("counter", "processed", 10_000, 10_001),
        ("counter", "processed", 6, 7),
        ("counter", "failed", 3, 3),
        ("average", "avg_process_time", 100.0, 100.0),
    ],
)
def test_force_always_logs(kind: MetricKind, name: str, last_logged: float, current: float) -> None:
    assert should_log(kind, name, last_logged, current) is False
    assert should_log(kind, name, last_logged, current, force=True) is True


@pytest.mark.parametrize(
    ("kind", "name", "last_logged", "current"),
    [
        ("counter", "enqueued", 10_000, 10_100),
        ("counter", "enqueued", 20, 70),
        ("counter", "enqueued", 0, 0),
    ],
)
def test_batch_always_logs(kind: MetricKind, name: str, last_logged: float, current: float) -> None:
    assert should_log(kind, name, last_logged, current) is False
    assert should_log(kind, name, last_logged, current, batch=True) is True


def test_documented_thresholds() -> None:
    assert (SMALL_COUNTER_MAX, LARGE_COUNTER_MIN) == (5, 10_000)
    assert LARGE_COUNTER_STEP_PERCENT == 10
    assert AVERAGE_CHANGE_PERCENT == 10


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("failed", True),
        ("system_errors", True),
        ("errors", True),
        ("decode_error", True),
        ("callback_errors", True),
        ("jobs_failed", True),
        ("processed", False),
        ("error_budget", False),
        ("failed_ratio", False),
    ],
)
def test_error_metric_names(name: str, expected: bool) -> None:
    assert is_error_metric(name) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("avg_process_time", "average"),
        ("avg_wait_ms", "average"),
        ("success_rate", "gauge"),
        ("processed", "counter"),
        ("failed", "counter"),
    ],
)
def test_kind_inferred_from_name(name: str, expected: MetricKind) -> None:
    assert infer_kind(name) == expected
