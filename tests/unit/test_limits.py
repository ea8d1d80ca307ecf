"""Queue limits, pure: rate parsing, validation and the Redis encoding claim.lua reads."""

from __future__ import annotations

import pytest

from queue_system import QueueConfig, QueueLimits
from queue_system.core.limits import RateLimit, decode_limits, encode_limits, parse_rate


@pytest.mark.parametrize(
    ("text", "count", "window_ms"),
    [("100/s", 100, 1_000), ("10/m", 10, 60_000), ("500/h", 500, 3_600_000), (" 7 / s ", 7, 1_000)],
)
def test_parse_rate(text: str, count: int, window_ms: int) -> None:
    assert parse_rate(text) == RateLimit(count=count, window_ms=window_ms)


@pytest.mark.parametrize("text", ["", "10", "0/s", "-1/s", "10/d", "1.5/s", "ten/s", "10/ s s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


@pytest.mark.parametrize("cap", [0, -1, 1.5, True, "3"])
def test_max_concurrency_must_be_a_positive_int(cap: object) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        QueueLimits(max_concurrency=cap)  # type: ignore[arg-type]


def test_rate_limit_is_normalised_and_checked() -> None:
    assert QueueLimits(rate_limit=" 10 / m").rate_limit == "10/m"
    with pytest.raises(ValueError, match="rate limit"):
        QueueLimits(rate_limit="fast")


@pytest.mark.parametrize(
    "limits",
    [
        QueueLimits(max_concurrency=3, rate_limit="10/s"),
        QueueLimits(max_concurrency=1),
        QueueLimits(rate_limit="5/h"),
        QueueLimits(),
    ],
)
@pytest.mark.parametrize("source", ["config", "runtime"])
def test_encoding_round_trips(limits: QueueLimits, source: str) -> None:
    assert decode_limits(encode_limits(limits, source)) == (limits, source)  # type: ignore[arg-type]


def test_the_encoding_is_what_claim_lua_parses() -> None:
    value = encode_limits(QueueLimits(max_concurrency=3, rate_limit="10/m"), "config")
    assert value == "3 10 60000 config"


@pytest.mark.parametrize("raw", ["", "3 10 60000", "3 10 1234 config", "a b c config", "3 0 0 x"])
def test_malformed_values_decode_to_none(raw: str) -> None:
    assert decode_limits(raw) is None


def test_config_takes_limits_per_queue_name() -> None:
    limits = QueueLimits(max_concurrency=2)
    config = QueueConfig(redis_url="redis://127.0.0.1:1/0", limits={"sms": limits})
    assert config.limits == {"sms": limits}
    with pytest.raises(ValueError, match="queue_name"):
        QueueConfig(redis_url="redis://127.0.0.1:1/0", limits={"bad name": limits})
    with pytest.raises(TypeError, match="QueueLimits"):
        QueueConfig(redis_url="redis://127.0.0.1:1/0", limits={"sms": {"max_concurrency": 2}})  # type: ignore[dict-item]
