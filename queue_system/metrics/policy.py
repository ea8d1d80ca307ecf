"""The reference's event-driven logging policy for metrics, as a pure function. No I/O.

:func:`should_log` decides from the last *logged* value and the current one whether an update
is worth a log record; it is table-tested in ``tests/unit/test_metrics_policy.py``.
"""

from __future__ import annotations

from typing import Literal

MetricKind = Literal["counter", "average", "gauge"]
METRIC_KINDS: tuple[MetricKind, ...] = ("counter", "average", "gauge")

# --- Logging policy thresholds -------------------------------------------------------------

#: Counters from 0 to this value (inclusive) log on every increment.
SMALL_COUNTER_MAX = 5
#: Counters at or above this value are "large"; "medium" is SMALL_COUNTER_MAX < value < this.
LARGE_COUNTER_MIN = 10_000
#: A large counter logs once it has moved by at least this many percent of its last logged value.
LARGE_COUNTER_STEP_PERCENT = 10
#: An average or gauge logs once it has moved by more than this many percent.
AVERAGE_CHANGE_PERCENT = 10

#: Metrics that log on every change, whatever their size.
ERROR_METRICS = frozenset({"failed", "system_errors", "errors"})
#: ... and so does any metric whose name ends with one of these.
ERROR_SUFFIXES = ("_error", "_errors", "_failed")
#: Names set directly (not summed) when no kind is given; ``avg_*`` names are averages.
GAUGE_METRICS = frozenset({"success_rate"})

# --- The policy -----------------------------------------------------------------------------


def is_error_metric(metric_name: str) -> bool:
    """Whether ``metric_name`` counts errors (and so logs on every change)."""
    return metric_name in ERROR_METRICS or metric_name.endswith(ERROR_SUFFIXES)


def infer_kind(metric_name: str) -> MetricKind:
    """The kind of a metric by name: ``avg_*`` average, GAUGE_METRICS gauge, else counter."""
    if metric_name.startswith("avg_"):
        return "average"
    if metric_name in GAUGE_METRICS:
        return "gauge"
    return "counter"


def _decade(value: float) -> int:
    """How many of the boundaries 10, 100, 1000, ... ``abs(value)`` has reached."""
    magnitude, boundary, count = abs(value), 10, 0
    # Integer boundaries, not log10: log10 of a float near a power of ten can round down.
    while magnitude >= boundary:
        count += 1
        boundary *= 10
    return count


def should_log(
    kind: MetricKind,
    metric_name: str,
    last_logged: float | None,
    current: float,
    *,
    force: bool = False,
    batch: bool = False,
) -> bool:
    """Decide whether an update to a metric is worth a log record (the reference's policy).

    Rules, first match wins:

    1. ``force`` or ``batch``: always.
    2. Never logged before (``last_logged is None``): always.
    3. Error metrics (:func:`is_error_metric`): on every change.
    4. Averages and gauges: when they moved by more than AVERAGE_CHANGE_PERCENT (10 %)
       of the last logged value (any change away from 0).
    5. Counters, by the size of ``current``:

       * small, 0-5: on every change (counters only grow, so: every increment);
       * medium, 6 <= value < 10,000: when a boundary 10, 100, 1000 lies between the last
         logged value and ``current``;
       * large, >= 10,000: on entering the range, then once the value moved by at least
         LARGE_COUNTER_STEP_PERCENT (10 %) of the last logged value.

    Comparing with the last *logged* value, not the previous one, keeps the rules right when
    a counter moves by more than one: 8 then +5 is 13, which crossed 10. A decrease (a reset)
    is measured like an increase, so it is never hidden.

    Args:
        kind: ``"counter"``, ``"average"`` or ``"gauge"``.
        metric_name: the metric's name (decides rule 3).
        last_logged: the value carried by the last record of this metric, or None.
        current: the value after the update.
        force: the caller asked for a record (``force_log=True``).
        batch: the update reports a batch operation.

    Returns:
        True when the update should be logged.
    """
    if force or batch or last_logged is None:
        return True
    if is_error_metric(metric_name):
        return current != last_logged
    if kind != "counter":
        if last_logged == 0:
            return current != 0
        return abs(current - last_logged) * 100 > abs(last_logged) * AVERAGE_CHANGE_PERCENT
    if abs(current) <= SMALL_COUNTER_MAX:
        return current != last_logged
    if abs(current) < LARGE_COUNTER_MIN:
        return _decade(current) != _decade(last_logged)
    if abs(last_logged) < LARGE_COUNTER_MIN:
        return True  # crossed the 10,000 boundary itself
    return abs(current - last_logged) * 100 >= abs(last_logged) * LARGE_COUNTER_STEP_PERCENT
