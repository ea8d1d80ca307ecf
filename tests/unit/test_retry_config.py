import random

import pytest

from queue_system import QueueRetryConfig


def test_default_is_exponential_from_one_second() -> None:
    config = QueueRetryConfig()
    assert config.max_attempts == 5
    assert config.delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert config.timeout is None


def test_fixed() -> None:
    config = QueueRetryConfig.fixed(delay=30, max_attempts=3, timeout=300)
    assert [config.base_delay_for_attempt(n) for n in (1, 2, 3)] == [30.0, 30.0, 30.0]
    assert config.max_attempts == 3 and config.timeout == 300


def test_exponential_is_capped() -> None:
    config = QueueRetryConfig.exponential(base=2.0, min_delay=1.0, max_delay=6.0, max_attempts=5)
    assert config.delays == [1.0, 2.0, 4.0, 6.0, 6.0]


def test_custom_defaults_attempts_to_schedule_length_and_repeats_last() -> None:
    config = QueueRetryConfig.custom(delays=[60, 300, 1800, 7200], timeout=86400)
    assert config.max_attempts == 4
    longer = QueueRetryConfig.custom(delays=[1, 2], max_attempts=4)
    assert [longer.base_delay_for_attempt(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 2.0, 2.0]


def test_jitter_stays_within_bounds_and_varies() -> None:
    config = QueueRetryConfig.fixed(delay=10, max_attempts=3)
    rng = random.Random(7)
    delays = {config.get_delay_for_attempt(1, rng) for _ in range(50)}
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(delays) > 1
    exact = QueueRetryConfig(max_attempts=2, delays=[3.0], jitter=0)
    assert exact.get_delay_for_attempt(2) == 3.0


def test_would_exceed_timeout() -> None:
    config = QueueRetryConfig.fixed(delay=1, timeout=300)
    assert not config.would_exceed_timeout(1000.0, 1300.0)
    assert config.would_exceed_timeout(1000.0, 1300.5)
    assert not QueueRetryConfig().would_exceed_timeout(0, 10**9)


def test_attempts_left_counts_retries() -> None:
    config = QueueRetryConfig.fixed(delay=1, max_attempts=2)
    assert config.has_attempts_left(0) and config.has_attempts_left(1)
    assert not config.has_attempts_left(2)


@pytest.mark.parametrize(
    "config",
    [
        QueueRetryConfig(),
        QueueRetryConfig.fixed(delay=0.25, max_attempts=0),
        QueueRetryConfig.custom(delays=[60, 300], max_attempts=7, timeout=12.5),
        QueueRetryConfig(max_attempts=1, delays=[0.1], jitter=0),
    ],
)
def test_dict_round_trip_is_exact(config: QueueRetryConfig) -> None:
    assert QueueRetryConfig.from_dict(config.to_dict()) == config
    assert QueueRetryConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "data",
    [
        {"max_attempts": -1},
        {"max_attempts": "3"},
        {"max_attempts": True},
        {"delays": [-1]},
        {"delays": ["x"]},
        {"delays": [float("nan")]},
        {"delays": "1,2"},
        {"timeout": 0},
        {"jitter": 2},
        {"unknown": 1},
        {"max_attempts": 2, "delays": []},
    ],
)
def test_from_dict_refuses_bad_input(data: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        QueueRetryConfig.from_dict(data)


def test_from_dict_refuses_non_dict() -> None:
    with pytest.raises(TypeError):
        QueueRetryConfig.from_dict([1, 2])  # type: ignore[arg-type]
