"""Per queue x priority counters (issue 15): succeeded / failed / retried / system_errors are
counted per tier in the shared metrics HASH, by the same Lua step that moves the item, and are
exposed by get_metrics(), the Prometheus collector and the health snapshot's oldest age per tier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from queue_system import QueueAdmin, QueueConfig, QueueManager, QueueRetryConfig
from tests.support.burst import run_burst
from tests.support.clock import FakeClock

FLAKY_CALLS: dict[int, int] = {}


def ok(data: dict[str, Any]) -> None:
    return None


def boom(data: dict[str, Any]) -> None:
    raise RuntimeError("boom")


def flaky(data: dict[str, Any]) -> None:
    FLAKY_CALLS[data["n"]] = FLAKY_CALLS.get(data["n"], 0) + 1
    if FLAKY_CALLS[data["n"]] == 1:
        raise RuntimeError("first run fails")


@pytest.fixture
def workload(make_config: Callable[..., QueueConfig], raw_redis: redis.Redis) -> QueueConfig:
    """Given: in 'alpha' 2 succeed in high and 1 in normal, 2 fail for good in low, 1
    succeeds on its retry in normal; in 'beta' 1 poison item (no envelope) in low and 1
    item with an unknown processor in high (both system errors, never run)."""
    FLAKY_CALLS.clear()
    config = make_config(unknown_processor_ttl=0)  # to system_errors at once
    manager = QueueManager(config)
    manager.enqueue_batch([{"n": 1}, {"n": 2}], ok, queue_name="alpha", priority="high")
    manager.enqueue({"n": 3}, ok, queue_name="alpha")
    no_retry = QueueRetryConfig(max_attempts=0)
    manager.enqueue_batch(
        [{"n": 4}, {"n": 5}], boom, queue_name="alpha", priority="low", retry_config=no_retry
    )
    once = QueueRetryConfig(max_attempts=1, delays=[0.01])
    manager.enqueue({"n": 6}, flaky, queue_name="alpha", retry_config=once)
    raw_redis.sadd(config.keys.registry, "beta")
    raw_redis.lpush(config.keys.queue("beta", "low"), b"\xff\xfe poison")
    manager.enqueue({"n": 7}, "billing:charge_card", queue_name="beta", priority="high")
    run_burst(config)
    return config


def counters(raw_redis: redis.Redis, config: QueueConfig) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw_redis.hgetall(config.keys.metrics).items()}


def test_each_outcome_is_counted_per_queue_and_priority(
    workload: QueueConfig, raw_redis: redis.Redis
) -> None:
    found = counters(raw_redis, workload)
    assert found["succeeded:alpha:high"] == 2
    assert found["succeeded:alpha:normal"] == 2  # n=3, and n=6 on its second run
    assert found["retried:alpha:normal"] == 1
    assert found["failed:alpha:low"] == 2
    # Items dead-lettered without a run count in the tier they were taken from.
    assert found["system_errors:beta:low"] == 1
    assert found["system_errors:beta:high"] == 1
    # The globals stay as they were, and equal the sums of the tiers.
    for name in ("succeeded", "failed", "retried", "system_errors"):
        tiers = sum(v for k, v in found.items() if k.startswith(f"{name}:"))
        assert found[name] == tiers, name
    assert "failed:alpha:normal" not in found and "succeeded:alpha:low" not in found


def test_get_metrics_shows_the_counters_per_tier(workload: QueueConfig) -> None:
    queues = workload.get_metrics()["queues"]
    high, normal, low = (queues["alpha"][p] for p in ("high", "normal", "low"))  # type: ignore[literal-required]
    assert (high["succeeded"], high["failed"], high["retried"]) == (2, 0, 0)
    assert (normal["succeeded"], normal["retried"], normal["processed"]) == (2, 1, 3)
    assert (low["failed"], low["succeeded"], low["system_errors"]) == (2, 0, 0)
    assert queues["beta"]["low"]["system_errors"] == 1
    assert queues["beta"]["high"]["system_errors"] == 1


def test_oldest_age_per_tier(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock)
    manager = QueueManager(config)
    manager.enqueue({"n": 1}, ok, queue_name="gamma", priority="low")
    clock.advance(30)
    manager.enqueue({"n": 2}, ok, queue_name="gamma", priority="high")
    manager.enqueue({"n": 3}, ok, queue_name="gamma", priority="low")
    clock.advance(10)
    # A junk item at the taking end of 'normal': that tier's age is unknown, never a crash.
    raw_redis.rpush(config.keys.queue("gamma", "normal"), b'{"enqueued_at": "yesterday"}')

    stats = QueueAdmin(config).get_system_health()["queue_stats"]["gamma"]

    assert stats["oldest_age_by_priority"] == {"high": 10.0, "normal": None, "low": 40.0}
    assert stats["oldest_age_s"] == 40.0


@pytest.mark.parametrize(
    "junk",
    [
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        b'{"enqueued_at": true}',
        b'{"enqueued_at": 1' + b"0" * 400 + b"}",  # an int no float can hold
        b'{"enqueued_at": NaN}',
        b"[" * 100_000 + b"]" * 100_000,  # nested deeper than the parser recurses
    ],
)
def test_a_junk_item_at_the_taking_end_gives_no_age(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis, junk: bytes
) -> None:
    config = make_config()
    raw_redis.sadd(config.keys.registry, "delta")
    raw_redis.rpush(config.keys.queue("delta", "high"), junk)

    health = QueueAdmin(config).get_system_health()

    assert health["redis_connected"] is True
    stats = health["queue_stats"]["delta"]
    assert stats["oldest_age_by_priority"]["high"] is None
    assert stats["oldest_age_s"] is None


def test_prometheus_counts_outcomes_and_oldest_age_per_tier(workload: QueueConfig) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    from queue_system.ops.prometheus import exposition, make_registry

    manager = QueueManager(workload)
    manager.enqueue({"n": 8}, ok, queue_name="alpha", priority="low")
    text = exposition(make_registry(workload)).decode()
    scraped = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }

    def tier(name: str, queue: str, priority: str) -> float:
        return scraped[(name, (("priority", priority), ("queue", queue)))]

    assert tier("queue_system_queue_succeeded_total", "alpha", "high") == 2
    assert tier("queue_system_queue_succeeded_total", "alpha", "low") == 0
    assert tier("queue_system_queue_failed_total", "alpha", "low") == 2
    assert tier("queue_system_queue_retried_total", "alpha", "normal") == 1
    assert tier("queue_system_queue_system_errors_total", "beta", "low") == 1
    assert ("queue_system_queue_enqueued_total", (("priority", "low"), ("queue", "alpha"))) in (
        scraped
    )
    assert tier("queue_system_queue_oldest_age_seconds", "alpha", "low") >= 0
    assert (
        "queue_system_queue_oldest_age_seconds",
        (("priority", "high"), ("queue", "alpha")),
    ) not in scraped
    # The existing families keep their names and labels.
    assert scraped[("queue_system_succeeded_total", ())] == 4
    assert scraped[("queue_system_oldest_age_seconds", (("queue", "alpha"),))] >= 0
