"""retry_with_backoff's own wait (tenacity's wait_exponential_jitter changed its arguments)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from queue_system.resilience.retry import _exponential_jitter


def waits(base: float, cap: float, attempts: range) -> list[float]:
    wait = _exponential_jitter(base, cap)
    state: Any = SimpleNamespace()
    found = []
    for attempt in attempts:
        state.attempt_number = attempt
        found.append(wait(state))
    return found


def test_each_wait_is_base_times_two_to_the_retry_plus_jitter_below_base() -> None:
    for retry, delay in enumerate(waits(0.5, 100.0, range(1, 8)), start=1):
        assert 0.5 * 2 ** (retry - 1) <= delay <= 0.5 * 2 ** (retry - 1) + 0.5


def test_the_cap_holds_far_past_float_range() -> None:
    # 2.0 ** 1100 overflows a float: the cap applies instead of an OverflowError.
    assert waits(0.1, 3.0, range(1099, 1102)) == [3.0, 3.0, 3.0]
