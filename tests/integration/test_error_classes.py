"""Error classes on a real server: give_up_on, retry_on, NonRetryableError, RetryAfter, and
the rule each attempt records."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from queue_system import (
    NonRetryableError,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    RetryAfter,
)
from queue_system.cli.main import cli
from tests.support.burst import run_burst
from tests.support.cli import cli_runner

RUNS: dict[str, int] = {}
FAILED_CALLBACKS: list[dict[str, Any]] = []
HOUR = 3600.0  # a retry schedule a test would never wait for


class RateLimited(Exception):
    """An application error named by its qualified name."""


def raise_named(entity: dict[str, Any]) -> None:
    """Raises the exception the entity names, counting runs per key."""
    RUNS[entity["key"]] = RUNS.get(entity["key"], 0) + 1
    errors: dict[str, BaseException] = {
        "value": ValueError("bad value"),
        "key": KeyError("missing"),
        "connection": ConnectionError("try later"),
        "rate_limited": RateLimited("slow down"),
        "non_retryable": NonRetryableError("final"),
        "retry_after": RetryAfter(0.01),
    }
    raise errors[entity["error"]]


def record_failure(data: dict[str, Any]) -> None:
    FAILED_CALLBACKS.append(data)


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    FAILED_CALLBACKS.clear()


def failures(raw_redis: redis.Redis, config: QueueConfig) -> list[dict[str, Any]]:
    return [json.loads(r) for r in raw_redis.lrange(config.keys.failures, 0, -1)]


def rules(record: dict[str, Any]) -> list[str]:
    return [attempt["rule"] for attempt in record["history"]]


def run_one(config: QueueConfig, manager: QueueManager, error: str, retry: QueueRetryConfig) -> str:
    manager.enqueue(
        {"key": error, "error": error}, raise_named, retry_config=retry, on_failure=record_failure
    )
    run_burst(config)
    return error


@pytest.mark.parametrize(
    ("error", "give_up_on", "rule"),
    [
        ("value", [ValueError], "give_up_on:ValueError"),
        ("key", [LookupError], "give_up_on:LookupError"),  # a base class matches too
        ("key", ["builtins.LookupError"], "give_up_on:LookupError"),
        ("rate_limited", [RateLimited], f"give_up_on:{__name__}.RateLimited"),
    ],
)
def test_give_up_on_fails_at_once(
    config: QueueConfig,
    manager: QueueManager,
    raw_redis: redis.Redis,
    error: str,
    give_up_on: list[Any],
    rule: str,
) -> None:
    retry = QueueRetryConfig(max_attempts=5, delays=[HOUR], give_up_on=give_up_on)
    run_one(config, manager, error, retry)
    assert RUNS[error] == 1
    [record] = failures(raw_redis, config)
    assert rules(record) == [rule]
    assert record["reason"] == "failed"
    assert len(FAILED_CALLBACKS) == 1  # on_failure runs as for any final failure


def test_retry_on_retries_only_what_it_names(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    retry = QueueRetryConfig(
        max_attempts=2, delays=[0.0], jitter=0, retry_on=[ConnectionError, RateLimited]
    )
    run_one(config, manager, "connection", retry)  # named: retried until attempts run out
    run_one(config, manager, "value", retry)  # not named: fails at once
    assert RUNS == {"connection": 3, "value": 1}
    by_key = {r["envelope"]["entity"]["key"]: r for r in failures(raw_redis, config)}
    assert rules(by_key["connection"]) == [
        "retry_on:ConnectionError",
        "retry_on:ConnectionError",
        "max_attempts",
    ]
    assert rules(by_key["value"]) == ["not_retry_on"]


def test_give_up_on_wins_over_retry_on(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    retry = QueueRetryConfig(
        max_attempts=3, delays=[HOUR], retry_on=[LookupError], give_up_on=[KeyError]
    )
    run_one(config, manager, "key", retry)
    assert RUNS["key"] == 1
    assert rules(failures(raw_redis, config)[0]) == ["give_up_on:KeyError"]


def test_non_retryable_error_goes_straight_to_failures(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    run_one(config, manager, "non_retryable", QueueRetryConfig(max_attempts=5, delays=[HOUR]))
    assert RUNS["non_retryable"] == 1
    [record] = failures(raw_redis, config)
    assert rules(record) == ["non_retryable"]
    assert record["error_type"] == "NonRetryableError"
    assert FAILED_CALLBACKS[0]["error_type"] == "NonRetryableError"


def test_retry_after_picks_the_delay_bounded_by_attempts(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    # The schedule says an hour; RetryAfter(0.01) says 10 ms: the burst ends only if it wins.
    run_one(config, manager, "retry_after", QueueRetryConfig(max_attempts=2, delays=[HOUR]))
    assert RUNS["retry_after"] == 3
    [record] = failures(raw_redis, config)
    assert rules(record) == ["retry_after", "retry_after", "max_attempts"]


def test_retry_after_stops_at_the_retry_timeout(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    retry = QueueRetryConfig(max_attempts=5, delays=[0.0], timeout=HOUR)

    manager.enqueue({"key": "late"}, ask_for_two_hours, retry_config=retry)
    run_burst(config)
    assert rules(failures(raw_redis, config)[0]) == ["timeout"]


def ask_for_two_hours(entity: dict[str, Any]) -> None:
    raise RetryAfter(2 * HOUR)


def test_rules_travel_with_the_item(config: QueueConfig, manager: QueueManager) -> None:
    retry = QueueRetryConfig(max_attempts=1, give_up_on=[RateLimited], retry_on=["OSError"])
    op = manager.enqueue({"key": "x", "error": "value"}, raise_named, retry_config=retry)
    stored = json.loads(config.redis_client.lrange(config.get_queue_key("raise_named"), 0, -1)[0])
    assert stored["id"] == op["operation_id"]
    assert stored["retry"]["give_up_on"] == [f"{__name__}.RateLimited"]
    assert stored["retry"]["retry_on"] == ["OSError"]
    assert QueueRetryConfig.from_dict(stored["retry"]) == retry


def test_failures_show_names_the_rule_that_decided_each_attempt(
    config: QueueConfig, manager: QueueManager, redis_url: str, key_prefix: str
) -> None:
    retry = QueueRetryConfig(max_attempts=5, delays=[HOUR], give_up_on=[ValueError])
    run_one(config, manager, "value", retry)
    [op_id] = [r["operation_id"] for r in failures(redis.Redis.from_url(redis_url), config)]
    shown = cli_runner().invoke(
        cli, ["--url", redis_url, "--prefix", key_prefix, "failures", "show", op_id]
    )
    assert shown.exit_code == 0, shown.stderr
    assert "ValueError: bad value [give_up_on:ValueError]" in shown.stdout
