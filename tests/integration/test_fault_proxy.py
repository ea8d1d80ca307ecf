"""The fault-injection proxy itself: each fault happens for real, on the wire."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from queue_system.engine.embedded_server import EmbeddedRedis
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until


@pytest.fixture
def proxy(redis_server: EmbeddedRedis) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.port) as made:
        yield made


def _client(url: str, timeout: float = 2.0) -> redis.Redis:
    # No retries: the test sees each fault exactly as the wire delivers it.
    return redis.Redis.from_url(url, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))


def test_forwards_commands(proxy: FaultProxy, key_prefix: str) -> None:
    client = _client(proxy.url)
    assert client.set(f"{key_prefix}a", "1")
    assert client.get(f"{key_prefix}a") == b"1"
    assert proxy.requests_matching(b"\r\nSET\r\n") == 1
    client.close()


def test_drop_reply_runs_the_command_but_loses_its_reply(
    proxy: FaultProxy, raw_redis: redis.Redis, key_prefix: str
) -> None:
    client = _client(proxy.url)
    fired = proxy.drop_reply(b"INCR")
    with pytest.raises(redis.ConnectionError):
        client.incr(f"{key_prefix}n")
    assert fired.is_set()
    assert raw_redis.get(f"{key_prefix}n") == b"1"  # the server ran it
    assert client.incr(f"{key_prefix}n") == 2  # the next call goes through
    client.close()


def test_reset_all_breaks_a_call_in_flight(proxy: FaultProxy, key_prefix: str) -> None:
    client = _client(proxy.url, timeout=5.0)
    errors: list[BaseException] = []

    def block() -> None:
        try:
            client.blpop([f"{key_prefix}never"], timeout=3)
        except redis.RedisError as exc:
            errors.append(exc)

    thread = threading.Thread(target=block)
    thread.start()
    wait_until(lambda: proxy.requests_matching(b"BLPOP") == 1)
    assert proxy.reset_all() == 1
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], redis.ConnectionError)
    client.close()


def test_blackhole_stalls_until_restored(proxy: FaultProxy, key_prefix: str) -> None:
    client = _client(proxy.url, timeout=0.3)
    client.ping()
    proxy.blackhole()
    with pytest.raises(redis.TimeoutError):
        client.get(f"{key_prefix}x")
    proxy.restore()
    fresh = _client(proxy.url)
    assert fresh.ping()
    fresh.close()
    client.close()


def test_hold_reply_delays_one_reply(
    proxy: FaultProxy, raw_redis: redis.Redis, key_prefix: str
) -> None:
    client = _client(proxy.url, timeout=0.2)
    proxy.hold_reply(b"INCR", 0.6)
    with pytest.raises(redis.TimeoutError):
        client.incr(f"{key_prefix}n")
    assert raw_redis.get(f"{key_prefix}n") == b"1"
    client.close()
