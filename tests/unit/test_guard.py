"""RedisGuard: which failures it retries, how often, and that a retry re-sends the same call."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis

from queue_system.engine.guard import RedisGuard

RETRIES = 2


def guard(retries: int = RETRIES) -> RedisGuard:
    # A server name no other test uses: breakers live in a process-wide registry.
    return RedisGuard(f"test-{uuid.uuid4().hex}", retries, connection_timeout=5.0)


class Flaky:
    """Raises ``error`` for the first ``failures`` calls, then returns "ok"; records each call."""

    def __init__(self, error: Exception, failures: int = 1_000) -> None:
        self.error = error
        self.failures = failures
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        if len(self.calls) <= self.failures:
            raise self.error
        return "ok"

    async def call_async(self, *args: Any, **kwargs: Any) -> str:
        return self(*args, **kwargs)


PLAN = (["k1", "k2"], ["nonce", "item"])


def test_a_timeout_is_never_retried() -> None:
    fn = Flaky(redis.TimeoutError("Timeout reading from socket"))
    with pytest.raises(redis.TimeoutError):
        guard().call(fn, keys=PLAN[0], args=PLAN[1])
    assert len(fn.calls) == 1


def test_a_timeout_is_never_retried_async() -> None:
    fn = Flaky(redis.TimeoutError("Timeout reading from socket"))
    with pytest.raises(redis.TimeoutError):
        asyncio.run(guard().call_async(fn.call_async, keys=PLAN[0], args=PLAN[1]))
    assert len(fn.calls) == 1


def test_a_dropped_connection_is_retried_max_connection_retries_times() -> None:
    fn = Flaky(redis.ConnectionError("Connection reset by peer"))
    with pytest.raises(redis.ConnectionError):
        guard().call(fn, keys=PLAN[0], args=PLAN[1])
    assert len(fn.calls) == 1 + RETRIES


def test_a_dropped_connection_is_retried_max_connection_retries_times_async() -> None:
    fn = Flaky(redis.ConnectionError("Connection reset by peer"))
    with pytest.raises(redis.ConnectionError):
        asyncio.run(guard().call_async(fn.call_async, keys=PLAN[0], args=PLAN[1]))
    assert len(fn.calls) == 1 + RETRIES


def test_no_retry_when_max_connection_retries_is_zero() -> None:
    fn = Flaky(redis.ConnectionError("Connection reset by peer"))
    with pytest.raises(redis.ConnectionError):
        guard(retries=0).call(fn)
    assert len(fn.calls) == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_retry_re_sends_the_very_same_call(use_async: bool) -> None:
    fn = Flaky(redis.ConnectionError("Connection reset by peer"), failures=RETRIES)
    keys, args = list(PLAN[0]), list(PLAN[1])
    if use_async:
        answer = asyncio.run(guard().call_async(fn.call_async, keys=keys, args=args))
    else:
        answer = guard().call(fn, keys=keys, args=args)
    assert answer == "ok"
    assert len(fn.calls) == 1 + RETRIES
    for call_args, call_kwargs in fn.calls:
        assert call_args == ()
        assert call_kwargs["keys"] is keys and call_kwargs["args"] is args  # the same plan
