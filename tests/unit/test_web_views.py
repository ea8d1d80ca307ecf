"""Pure parts of the dashboard: token/session/CSRF signing, the chart, item previews."""

from __future__ import annotations

import pytest

from queue_system.ops.history import Interval, parse_sample
from queue_system.web.auth import TokenAuth
from queue_system.web.views import CHART_HEIGHT, CHART_WIDTH, chart, preview, waiting_item


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        TokenAuth("")


def test_csrf_tokens_belong_to_one_session_and_one_token() -> None:
    auth, other = TokenAuth("a"), TokenAuth("b")
    assert auth.token_matches("a") and not auth.token_matches("A") and not auth.token_matches(None)
    assert auth.csrf_ok("s1", auth.csrf_token("s1"))
    assert not auth.csrf_ok("s2", auth.csrf_token("s1"))
    assert not auth.csrf_ok("s1", other.csrf_token("s1"))
    assert not auth.csrf_ok(None, auth.csrf_token("s1"))
    assert auth.new_session() != auth.new_session()


def test_chart_points_scale_to_the_window_and_the_maximum() -> None:
    intervals = [
        Interval(start=0, end=60, processed=10, succeeded=10, finished=10),
        Interval(start=60, end=120, processed=20, succeeded=5, finished=10),
        Interval(start=120, end=180, processed=0, succeeded=0, finished=0),
    ]
    drawn = chart(intervals, window_s=180, now=180)
    assert drawn.max_throughput == 20.0
    first, second, third = drawn.throughput_points.split()
    assert first == f"{CHART_WIDTH / 3:.1f},{CHART_HEIGHT / 2:.1f}"
    assert second == f"{CHART_WIDTH * 2 / 3:.1f},0.0"
    assert third == f"{CHART_WIDTH:.1f},{CHART_HEIGHT:.1f}"
    # No item finished in the last interval: no success-rate point for it.
    assert len(drawn.success_points.split()) == 2 and drawn.last_success_rate == 50.0


def test_an_empty_history_draws_nothing() -> None:
    drawn = chart([], window_s=3600, now=0)
    assert drawn.throughput_points == "" and drawn.last_throughput is None


def test_previews_are_cut_and_junk_is_shown_not_dropped() -> None:
    assert preview("x" * 10, limit=5) == "xxxx\u2026"
    junk = waiting_item(3, b"\xff not an envelope")
    assert junk.operation_id is None and "not an envelope" in junk.preview


def test_a_sample_that_is_not_one_parses_as_none() -> None:
    assert parse_sample(b"1.5 1 2 3 4 5") is not None
    assert parse_sample(b"1.5 1 2") is None and parse_sample("x 1 2 3 4 5") is None
