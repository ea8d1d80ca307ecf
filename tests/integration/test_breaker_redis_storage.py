"""The breaker's own Redis storage (it no longer leans on pybreaker's): keys, times, Redis down."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pybreaker
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from queue_system.engine.embedded_server import free_loopback_port
from queue_system.resilience import CircuitBreakerOpenError, breakers, circuit_breaker


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    made.close()


def test_open_state_and_opened_at_are_kept_in_redis_to_the_millisecond(
    key_prefix: str, client: redis.Redis
) -> None:
    name = f"{key_prefix}storage"

    @circuit_breaker(name=name, failure_threshold=1, recovery_timeout=600.0, redis_client=client)
    def op() -> None:
        raise ConnectionError("down")

    before = datetime.now(timezone.utc)
    with pytest.raises(ConnectionError):
        op()
    after = datetime.now(timezone.utc)
    try:
        assert client.get(f"{name}:pybreaker:state") == b"open"
        with pytest.raises(CircuitBreakerOpenError) as rejected:
            op()
        retry_at = rejected.value.retry_at
        assert retry_at is not None and retry_at.utcoffset() == timedelta(0)
        opened_at = retry_at - timedelta(seconds=600)
        assert before - timedelta(milliseconds=1) <= opened_at <= after  # not cut to seconds
    finally:
        breakers.reset()
    assert client.get(f"{name}:pybreaker:state") == b"closed"
    assert client.exists(f"{name}:pybreaker:failures") == 0


def test_an_unreachable_redis_breaks_no_decoration_and_the_breaker_acts_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No retries: redis-py's default backoff would spend seconds on each refused command.
    dead = redis.Redis(
        port=free_loopback_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    caplog.set_level(logging.ERROR, logger="queue_system.resilience.breaker.storage")
    name = f"dead-{uuid.uuid4().hex[:8]}"
    calls: list[int] = []

    @circuit_breaker(name=name, failure_threshold=1, redis_client=dead)
    def op(fail: bool = False) -> str:
        calls.append(1)
        if fail:
            raise ConnectionError("the service is down too")
        return "ok"

    try:
        assert op() == "ok"
        for _ in range(3):  # no failure can be counted, so it never opens
            with pytest.raises(ConnectionError):
                op(fail=True)
        assert op() == "ok"
        assert len(calls) == 5
        found = breakers.get(name)
        assert found is not None and found.current_state == pybreaker.STATE_CLOSED
        assert any("RedisError" in r.getMessage() for r in caplog.records)
    finally:
        dead.close()
