"""Where a QueueConfig connects: URLs parsed, clients' targets read, unknown servers refused.

Building a redis-py client opens no connection, so none of these needs a server.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio
import redis.cluster
import redis.sentinel

from queue_system import ConfigurationError, QueueConfig
from queue_system.engine import connection
from queue_system.engine.connection import DirectTarget, SentinelTarget, parse_sentinel_url


def test_a_sentinel_url_names_every_sentinel_the_service_and_the_db() -> None:
    target = parse_sentinel_url("redis+sentinel://u%40x:p%3Aw@h1:26380,h2,[::1]:5/mymaster/3", 2.0)
    assert target.sentinels == (("h1", 26380), ("h2", 26379), ("::1", 5))
    assert target.service_name == "mymaster"
    assert target.kwargs["db"] == 3
    assert (target.kwargs["username"], target.kwargs["password"]) == ("u@x", "p:w")
    assert target.kwargs["socket_timeout"] == 2.0
    assert target.sentinel_kwargs == {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def test_a_sentinel_url_without_db_uses_db_0_and_no_credentials() -> None:
    target = parse_sentinel_url("redis+sentinel://127.0.0.1:26379/queue", 1.0)
    assert target.kwargs["db"] == 0
    assert "password" not in target.kwargs and "username" not in target.kwargs


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:1/",  # no service
        "redis+sentinel://h:1/svc/x",  # db not a number
        "redis+sentinel://h:1/svc/0/extra",
        "redis+sentinel://h:port/svc",
        "redis+sentinel://h:1/svc?ssl=true",  # options are not silently dropped
        "redis+sentinel://,h:1/svc",
    ],
)
def test_a_malformed_sentinel_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid redis_url"):
        QueueConfig(redis_url=url)


def test_a_sentinel_url_password_is_hidden_in_the_repr() -> None:
    config = QueueConfig(redis_url="redis+sentinel://:secret@h1:1,h2:2/svc")
    assert "secret" not in repr(config)
    config.redis_client.close()


def test_a_sentinel_url_gives_sentinel_clients_for_sync_and_asyncio() -> None:
    config = QueueConfig(redis_url="redis+sentinel://h1:1,h2:2/svc/2", connection_timeout=1.5)
    pool = config.redis_client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "svc" and pool.connection_kwargs["db"] == 2
    aclient = config.make_async_client(socket_timeout=0.25)
    apool = aclient.connection_pool
    assert isinstance(apool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert apool.connection_kwargs["socket_timeout"] == 0.25
    hosts = [s.connection_pool.connection_kwargs["port"] for s in apool.sentinel_manager.sentinels]
    assert hosts == [1, 2]
    assert config.topology() == {
        "mode": "sentinel",
        "service_name": "svc",
        "sentinels": ["h1:1", "h2:2"],
    }
    assert config.guard.breaker.name == "redis sentinel:svc/2"
    config.redis_client.close()


def test_a_user_sentinel_client_is_read_for_its_sentinels_and_settings() -> None:
    sentinel = redis.sentinel.Sentinel(
        [("10.0.0.1", 26379), ("10.0.0.2", 26380)], sentinel_kwargs={"password": "s"}
    )
    client = sentinel.master_for("svc", db=4, password="pw", socket_timeout=3)
    target = connection.target_of(client)
    assert target == SentinelTarget(
        service_name="svc",
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380)),
        kwargs={"db": 4, "password": "pw", "socket_timeout": 3},
        sentinel_kwargs={"password": "s"},
    )


def test_a_sentinel_replica_client_is_refused() -> None:
    replica = redis.sentinel.Sentinel([("h", 1)]).slave_for("svc")
    with pytest.raises(ConfigurationError, match=r"replica of 'svc'.*master_for"):
        QueueConfig(redis_client=replica)


def test_a_plain_client_is_a_direct_target() -> None:
    client = redis.Redis(host="10.1.2.3", port=7000, db=2, password="pw")
    target = connection.target_of(client)
    assert isinstance(target, DirectTarget)
    assert {k: target.kwargs[k] for k in ("host", "port", "db", "password")} == {
        "host": "10.1.2.3",
        "port": 7000,
        "db": 2,
        "password": "pw",
    }
    config = QueueConfig(redis_client=client)
    assert config.guard.breaker.name == "redis 10.1.2.3:7000/2"
    assert config.make_async_client().connection_pool.connection_kwargs["host"] == "10.1.2.3"


class CustomPool(redis.ConnectionPool):
    """A pool that may reach a server its settings do not name (a proxy, a router...)."""


def test_a_worker_client_is_refused_for_a_pool_that_does_not_say_where_it_connects() -> None:
    config = QueueConfig(redis_client=redis.Redis(connection_pool=CustomPool()))
    assert connection.target_of(config.redis_client) is None
    assert config.topology()["mode"] == "unknown"
    with pytest.raises(ConfigurationError, match=r"CustomPool.*async_client_factory"):
        config.make_async_client()
    assert config.make_sync_client() is None  # health then uses redis_client as it is


def test_an_async_client_factory_is_called_for_each_asyncio_client() -> None:
    made: list[redis.asyncio.Redis] = []

    def factory() -> redis.asyncio.Redis:
        made.append(redis.asyncio.Redis(host="10.9.9.9"))
        return made[-1]

    config = QueueConfig(
        redis_client=redis.Redis(connection_pool=CustomPool()), async_client_factory=factory
    )
    first, second = config.make_async_client(), config.make_async_client(socket_timeout=1)
    assert [first, second] == made and first is not second


def test_an_async_client_factory_needs_a_sync_client_or_url() -> None:
    with pytest.raises(ConfigurationError, match="needs redis_client= or redis_url="):
        QueueConfig(async_client_factory=redis.asyncio.Redis)


def test_an_async_client_factory_must_return_an_asyncio_client() -> None:
    wrong: Any = lambda: redis.Redis()  # noqa: E731 - the mistake under test
    config = QueueConfig(redis_url="redis://h:1/0", async_client_factory=wrong)
    with pytest.raises(TypeError, match=r"must return a redis\.asyncio\.Redis"):
        config.make_async_client()


def test_a_decoding_client_of_an_unknown_pool_is_refused() -> None:
    pool = CustomPool(decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        QueueConfig(redis_client=redis.Redis(connection_pool=pool))


def test_a_cluster_client_is_refused_with_a_clear_error() -> None:
    cluster = redis.cluster.RedisCluster.__new__(redis.cluster.RedisCluster)  # no connection
    with pytest.raises(ConfigurationError, match="Redis Cluster is not supported yet"):
        QueueConfig(redis_client=cluster)


def test_min_replicas_is_validated() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        QueueConfig(redis_url="redis://h:1/0", min_replicas=-1)
    with pytest.raises(ValueError, match="shorter than connection_timeout"):
        QueueConfig(redis_url="redis://h:1/0", min_replicas=1, replica_timeout=5.0)
