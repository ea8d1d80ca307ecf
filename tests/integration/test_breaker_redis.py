"""Redis-backed breaker state: every process sees one breaker (the suite's own server)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pybreaker
import pytest
import redis

from queue_system.resilience.breaker import CircuitBreaker
from utils import CircuitBreakerOpenError, breakers, circuit_breaker

ROOT = Path(__file__).resolve().parents[2]

# Opens (or feeds failures to) the breaker named argv[2], stored in Redis at argv[1].
FAIL_IN_OTHER_PROCESS = textwrap.dedent(
    """
    import sys

    import redis

    from utils import breakers, circuit_breaker

    url, name, failures = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = redis.Redis.from_url(url)

    @circuit_breaker(name=name, failure_threshold=2, recovery_timeout=600.0, redis_client=client)
    def use_redis() -> None:
        raise ConnectionError("redis is down")

    for _ in range(failures):
        try:
            use_redis()
        except ConnectionError:
            pass
    print(breakers.get(name).current_state)
    """
)


def fail_in_other_process(redis_url: str, name: str, failures: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", FAIL_IN_OTHER_PROCESS, redis_url, name, str(failures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(params=[False, True], ids=["bytes", "decode_responses"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    """This process's client; pybreaker's storage must work with either reply type."""
    made = redis.Redis.from_url(redis_url, decode_responses=request.param)
    yield made
    made.close()


def guarded(name: str, client: redis.Redis, calls: list[str]):  # type: ignore[no-untyped-def]
    @circuit_breaker(name=name, failure_threshold=2, recovery_timeout=600.0, redis_client=client)
    def use_redis(fail: bool = False) -> str:
        calls.append("called")
        if fail:
            raise ConnectionError("redis is down")
        return "ok"

    return use_redis


def registered(name: str) -> CircuitBreaker:
    found = breakers.get(name)
    assert found is not None
    return found


def test_breaker_opened_by_another_process_rejects_here(
    redis_url: str, key_prefix: str, client: redis.Redis
) -> None:
    name = f"{key_prefix}redis_operations"
    calls: list[str] = []
    use_redis = guarded(name, client, calls)
    assert use_redis() == "ok"

    assert fail_in_other_process(redis_url, name, failures=2) == pybreaker.STATE_OPEN

    with pytest.raises(CircuitBreakerOpenError, match=name) as rejected:
        use_redis()
    assert calls == ["called"]
    assert rejected.value.retry_at is not None
    assert registered(name).current_state == pybreaker.STATE_OPEN
    assert client.get(f"{name}:pybreaker:state") in (b"open", "open")


def test_failures_from_two_processes_add_up(
    redis_url: str, key_prefix: str, client: redis.Redis
) -> None:
    name = f"{key_prefix}shared_window"
    calls: list[str] = []
    use_redis = guarded(name, client, calls)

    assert fail_in_other_process(redis_url, name, failures=1) == pybreaker.STATE_CLOSED
    with pytest.raises(ConnectionError):
        use_redis(fail=True)  # second failure overall: the threshold of 2 is reached

    assert registered(name).current_state == pybreaker.STATE_OPEN
    with pytest.raises(CircuitBreakerOpenError):
        use_redis()


def test_reset_closes_the_shared_state_in_redis(
    redis_url: str, key_prefix: str, client: redis.Redis
) -> None:
    name = f"{key_prefix}reset"
    use_redis = guarded(name, client, [])
    assert fail_in_other_process(redis_url, name, failures=2) == pybreaker.STATE_OPEN

    breakers.reset()

    assert client.get(f"{name}:pybreaker:state") in (b"closed", "closed")
    assert use_redis() == "ok"
