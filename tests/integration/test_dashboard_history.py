"""The chart's history: sample_history.lua keeps one sample per interval, shared by every
dashboard replica, bounded, and safe to re-send."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.ops.history import HISTORY_WINDOW_S, CounterHistory, parse_sample
from queue_system.web.views import chart
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.proxy import FaultProxy


def ok(data: dict[str, int]) -> None:
    return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(make_config: Callable[..., QueueConfig], clock: FakeClock) -> QueueConfig:
    return make_config(clock=clock)


def test_replicas_share_one_sample_per_interval(
    config: QueueConfig, clock: FakeClock, raw_redis: redis.Redis
) -> None:
    replicas = [CounterHistory(config, interval_s=10), CounterHistory(config, interval_s=10)]
    assert [r.sample() for r in replicas] == [True, False]
    clock.advance(9.9)
    assert [r.sample() for r in replicas] == [False, False]
    clock.advance(0.1)
    assert [r.sample() for r in reversed(replicas)] == [True, False]
    assert raw_redis.llen(config.keys.metrics_history) == 2


def test_history_is_capped_to_an_hour(
    config: QueueConfig, clock: FakeClock, raw_redis: redis.Redis
) -> None:
    history = CounterHistory(config, interval_s=600)  # 6 per hour: cap 7
    for _ in range(20):
        history.sample()
        clock.advance(600)
    assert raw_redis.llen(config.keys.metrics_history) == history.cap == 7
    assert all(s.at >= clock.time() - HISTORY_WINDOW_S for s in history.samples())


def test_intervals_count_what_happened_between_samples(
    config: QueueConfig, clock: FakeClock
) -> None:
    history = CounterHistory(config, interval_s=10)
    manager = QueueManager(config)
    history.sample()
    manager.enqueue_batch([{"n": n} for n in range(6)], ok, queue_name="q")
    run_burst(config)
    clock.advance(30)
    history.sample()
    (interval,) = history.intervals()
    assert (interval.processed, interval.succeeded, interval.finished) == (6, 6, 6)
    assert interval.throughput_per_min == pytest.approx(12.0)
    assert interval.success_rate == 100.0
    drawn = chart(history.intervals(), 60.0, clock.time())
    assert drawn.last_throughput == pytest.approx(12.0) and drawn.samples == 1


def test_a_sample_from_a_clock_that_ran_ahead_is_replaced(
    config: QueueConfig, clock: FakeClock, raw_redis: redis.Redis
) -> None:
    history = CounterHistory(config, interval_s=10)
    clock.advance(3600)
    history.sample()
    clock.advance(-3600)  # the next replica's clock is an hour behind
    assert history.sample() is True
    stored = [parse_sample(s) for s in raw_redis.lrange(config.keys.metrics_history, 0, -1)]
    assert [s.at for s in stored if s] == [clock.time()]


def test_a_resent_sample_is_appended_once(
    make_config: Callable[..., QueueConfig],
    clock: FakeClock,
    redis_server: EmbeddedRedis,
    raw_redis: redis.Redis,
) -> None:
    with FaultProxy(redis_server.port) as proxy:
        config = make_config(redis_url=proxy.url, clock=clock)
        history = CounterHistory(config, interval_s=10)
        history.sample()
        clock.advance(10)
        # When: the reply of the next sample is lost once, and redis-py re-sends the call.
        lost = proxy.drop_reply(b"metrics_history")
        assert history.sample() is False  # the re-sent call found the sample it appended
        assert lost.is_set()
        assert raw_redis.llen(config.keys.metrics_history) == 2
