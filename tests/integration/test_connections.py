"""Clients queue_system cannot see through (a custom pool): used as given, never rebuilt.

A pool class of the application's own may reach a server its settings do not name, so the
library uses such a sync client as it is, asks ``async_client_factory`` for asyncio clients,
and refuses to start a worker without one (rather than guess, as it once did, and connect to
whatever the settings say: localhost:6379 for a Sentinel pool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio

from queue_system import ConfigurationError, QueueAdmin, QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis
from tests.support.burst import run_burst

_done: list[int] = []


def job(data: dict[str, int]) -> None:
    _done.append(data["n"])


class AppPool(redis.ConnectionPool):
    """An application's own pool class (the library cannot know where it connects)."""


@pytest.fixture
def app_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(connection_pool=AppPool(host="127.0.0.1", port=redis_server.port))
    yield client
    client.connection_pool.disconnect()


def test_a_worker_refuses_to_start_without_an_async_client_factory(
    app_client: redis.Redis, key_prefix: str
) -> None:
    config = QueueConfig(redis_client=app_client, queue_prefix=key_prefix)
    with pytest.raises(ConfigurationError, match="async_client_factory"):
        asyncio.run(QueueWorker(config, burst=True).run())


def test_a_worker_uses_the_async_client_factory(
    app_client: redis.Redis, redis_server: EmbeddedRedis, key_prefix: str
) -> None:
    _done.clear()
    config = QueueConfig(
        redis_client=app_client,
        async_client_factory=lambda: redis.asyncio.Redis(port=redis_server.port),
        queue_prefix=key_prefix,
    )
    config.register_callback(job)
    QueueManager(config).enqueue({"n": 5}, job, queue_name="work")
    run_burst(config)
    assert _done == [5]


def test_health_reads_through_the_given_client(
    app_client: redis.Redis, key_prefix: str, make_config: Callable[..., QueueConfig]
) -> None:
    QueueManager(make_config()).enqueue({"n": 1}, job, queue_name="work")
    config = QueueConfig(redis_client=app_client, queue_prefix=key_prefix)
    health = QueueAdmin(config).get_system_health()
    assert health["redis_connected"] is True
    assert health["queue_stats"]["work"]["normal"] == 1
    assert health["topology"]["mode"] == "unknown"
    assert health["topology"]["master"] is None
    assert health["topology"]["role"] == "master"
    assert app_client.ping()  # still usable after the health check


def test_health_reports_a_standalone_topology(
    config: QueueConfig, redis_server: EmbeddedRedis
) -> None:
    topology = QueueAdmin(config).get_system_health()["topology"]
    assert topology == {
        "mode": "standalone",
        "service_name": None,
        "sentinels": [],
        "role": "master",
        "master": f"127.0.0.1:{redis_server.port}",
        "connected_replicas": 0,
    }
