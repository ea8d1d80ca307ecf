"""RedisGuard: which failures it retries, how often, and that a retry re-sends the same call."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pybreaker
import pytest
import redis

from queue_system.engine.guard import REDIS_FAILURE_THRESHOLD, RedisGuard
from queue_system.errors import QueueUnavailableError

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


# --- the breaker's bookkeeping, also when the quiet hot path skips its admission -------------


def run(g: RedisGuard, fn: Flaky, use_async: bool) -> Any:
    if use_async:
        return asyncio.run(g.call_async(fn.call_async, keys=PLAN[0], args=PLAN[1]))
    return g.call(fn, keys=PLAN[0], args=PLAN[1])


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_failures_open_the_breaker_then_calls_fail_at_once(use_async: bool) -> None:
    g = guard()
    failing = Flaky(redis.TimeoutError("Timeout reading from socket"))
    for _ in range(REDIS_FAILURE_THRESHOLD):
        assert g.breaker.is_quiet() == (not failing.calls)  # only the first try is "quiet"
        with pytest.raises(redis.TimeoutError):
            run(g, failing, use_async)
    assert g.breaker.current_state == "open"
    fine = Flaky(redis.TimeoutError("never raised"), failures=0)
    with pytest.raises(QueueUnavailableError, match="open"):
        run(g, fine, use_async)
    assert fine.calls == []  # not even tried


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_success_forgets_earlier_failures(use_async: bool) -> None:
    g = guard()
    failing = Flaky(redis.TimeoutError("Timeout reading from socket"))
    fine = Flaky(redis.TimeoutError("never raised"), failures=0)
    for _ in range(REDIS_FAILURE_THRESHOLD - 1):
        with pytest.raises(redis.TimeoutError):
            run(g, failing, use_async)
    assert not g.breaker.is_quiet() and g.breaker.fail_counter == REDIS_FAILURE_THRESHOLD - 1
    assert run(g, fine, use_async) == "ok"
    assert g.breaker.is_quiet() and g.breaker.fail_counter == 0
    with pytest.raises(redis.TimeoutError):
        run(g, failing, use_async)
    assert g.breaker.current_state == "closed"


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_an_answer_from_redis_is_no_failure(use_async: bool) -> None:
    g = guard()
    refused = Flaky(redis.ResponseError("QS_TOO_MANY_QUEUES"))
    for _ in range(REDIS_FAILURE_THRESHOLD + 1):
        with pytest.raises(redis.ResponseError):
            run(g, refused, use_async)
    assert g.breaker.is_quiet() and g.breaker.current_state == "closed"


def test_a_listener_turns_the_hot_path_off() -> None:
    g = guard()
    assert g.breaker.is_quiet()
    g.breaker.add_listener(pybreaker.CircuitBreakerListener())
    assert not g.breaker.is_quiet()  # its before_call/success must see every call
