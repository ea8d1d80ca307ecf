"""circuit_breaker: pybreaker's state machine with a window, a half-open limit and asyncio.

Time is frozen with freezegun (``real_asyncio=True`` in async scenarios, which run under
``asyncio.run``); nothing waits for a recovery timeout in real time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import uuid

import pybreaker
import pytest
from freezegun import freeze_time

from queue_system.resilience.breaker import CircuitBreaker
from utils import CircuitBreakerOpenError, breakers, circuit_breaker

START = "2030-01-01 00:00:00"


@pytest.fixture
def name() -> str:
    """A breaker name no other test uses (breakers live in a process-wide registry)."""
    return f"test-{uuid.uuid4().hex[:8]}"


def failing(name: str, **settings: object):  # type: ignore[no-untyped-def]
    """A function guarded by breaker ``name`` that raises what it is told to, else returns."""
    calls: list[object] = []

    @circuit_breaker(name=name, **settings)  # type: ignore[arg-type]
    def op(error: BaseException | None = None) -> str:
        calls.append(error)
        if error is not None:
            raise error
        return "ok"

    op.calls = calls  # type: ignore[attr-defined]
    return op


def breaker(name: str) -> CircuitBreaker:
    found = breakers.get(name)
    assert found is not None
    return found


def trip(op, times: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(times):
        with pytest.raises(ConnectionError):
            op(ConnectionError("down"))


def test_closed_opens_at_the_threshold_and_then_rejects_without_calling(name: str) -> None:
    op = failing(name, failure_threshold=3, recovery_timeout=30.0)
    with freeze_time(START):
        trip(op, 2)
        assert breaker(name).current_state == pybreaker.STATE_CLOSED

        trip(op, 1)  # the call that trips re-raises its own error
        assert breaker(name).current_state == pybreaker.STATE_OPEN

        with pytest.raises(CircuitBreakerOpenError) as rejected:
            op()
    assert len(op.calls) == 3
    message = str(rejected.value)
    assert repr(name) in message
    assert "30.0s" in message
    assert "2030-01-01T00:00:30+00:00" in message
    assert rejected.value.breaker_name == name
    assert isinstance(rejected.value, pybreaker.CircuitBreakerError)


def test_open_goes_half_open_after_recovery_and_a_trial_success_closes(name: str) -> None:
    op = failing(name, failure_threshold=1, recovery_timeout=30.0)
    with freeze_time(START) as frozen:
        trip(op, 1)
        frozen.tick(29)
        with pytest.raises(CircuitBreakerOpenError, match=r"in 1\.0s"):
            op()

        frozen.tick(1)
        assert op() == "ok"
    assert breaker(name).current_state == pybreaker.STATE_CLOSED
    assert op() == "ok"


def test_half_open_trial_failure_reopens_for_another_recovery_timeout(name: str) -> None:
    op = failing(name, failure_threshold=1, recovery_timeout=30.0)
    with freeze_time(START) as frozen:
        trip(op, 1)
        frozen.tick(31)
        trip(op, 1)  # the trial call fails
        assert breaker(name).current_state == pybreaker.STATE_OPEN

        with pytest.raises(CircuitBreakerOpenError, match="2030-01-01T00:01:01"):
            op()
        frozen.tick(31)
        assert op() == "ok"
    assert breaker(name).current_state == pybreaker.STATE_CLOSED


def test_failures_older_than_the_window_do_not_count(name: str) -> None:
    op = failing(name, failure_threshold=3, window_size=60.0)
    with freeze_time(START) as frozen:
        trip(op, 2)
        frozen.tick(61)
        trip(op, 2)  # 2 recent failures; the first 2 aged out
        assert breaker(name).fail_counter == 2
        assert breaker(name).current_state == pybreaker.STATE_CLOSED

        frozen.tick(30)
        trip(op, 1)  # 3 failures inside the last 60 s
    assert breaker(name).current_state == pybreaker.STATE_OPEN


def test_a_success_resets_the_failure_count(name: str) -> None:
    op = failing(name, failure_threshold=2)
    trip(op, 1)
    assert op() == "ok"
    trip(op, 1)
    assert breaker(name).current_state == pybreaker.STATE_CLOSED


def test_half_open_admits_at_most_max_calls_concurrent_trials(name: str) -> None:
    async def scenario() -> tuple[list[str | BaseException], int]:
        release = asyncio.Event()
        all_trials_in = asyncio.Event()
        running = 0

        @circuit_breaker(
            name=name, failure_threshold=1, recovery_timeout=10.0, half_open_max_calls=2
        )
        async def op(fail: bool = False) -> str:
            nonlocal running
            if fail:
                raise ConnectionError("down")
            running += 1
            if running == 2:
                all_trials_in.set()
            await release.wait()
            return "ok"

        with pytest.raises(ConnectionError):
            await op(fail=True)
        frozen.tick(11)

        calls = [asyncio.ensure_future(op()) for _ in range(5)]
        await asyncio.wait_for(all_trials_in.wait(), timeout=5)
        release.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        return results, running

    with freeze_time(START, real_asyncio=True) as frozen:
        results, ran = asyncio.run(scenario())

    assert ran == 2
    assert results[:2] == ["ok", "ok"]
    assert all(isinstance(r, CircuitBreakerOpenError) for r in results[2:])
    assert "half-open" in str(results[2]) and repr(name) in str(results[2])
    assert breaker(name).current_state == pybreaker.STATE_CLOSED


def test_async_transitions_closed_open_half_open_closed(name: str) -> None:
    async def scenario() -> list[str]:
        @circuit_breaker(name=name, failure_threshold=2, recovery_timeout=5.0)
        async def op(fail: bool) -> str:
            await asyncio.sleep(0)
            if fail:
                raise ConnectionError("down")
            return "ok"

        states = []
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await op(True)
        states.append(breaker(name).current_state)
        with pytest.raises(CircuitBreakerOpenError):
            await op(False)
        frozen.tick(5)
        with pytest.raises(ConnectionError):
            await op(True)  # failed trial
        states.append(breaker(name).current_state)
        frozen.tick(5)
        assert await op(False) == "ok"
        states.append(breaker(name).current_state)
        return states

    with freeze_time(START, real_asyncio=True) as frozen:
        states = asyncio.run(scenario())
    assert states == ["open", "open", "closed"]


def test_cancelled_trial_neither_closes_nor_reopens(name: str) -> None:
    async def scenario() -> str:
        started = asyncio.Event()

        @circuit_breaker(name=name, failure_threshold=1, recovery_timeout=5.0)
        async def op(fail: bool) -> None:
            if fail:
                raise ConnectionError("down")
            started.set()
            await asyncio.Event().wait()

        with pytest.raises(ConnectionError):
            await op(True)
        frozen.tick(5)
        task = asyncio.ensure_future(op(False))
        await asyncio.wait_for(started.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return breaker(name).current_state

    with freeze_time(START, real_asyncio=True) as frozen:
        assert asyncio.run(scenario()) == pybreaker.STATE_HALF_OPEN


def test_same_name_shares_one_breaker(name: str) -> None:
    first = failing(name, failure_threshold=2)
    second = failing(name, failure_threshold=2)
    trip(first, 1)
    trip(second, 1)
    with pytest.raises(CircuitBreakerOpenError):
        first()
    with pytest.raises(CircuitBreakerOpenError):
        second()


def test_same_name_with_other_settings_is_an_error(name: str) -> None:
    failing(name, failure_threshold=2)
    with pytest.raises(ValueError, match="already exists with other settings"):
        failing(name, failure_threshold=3)


def test_default_name_is_module_and_qualname() -> None:
    @circuit_breaker(failure_threshold=10, recovery_timeout=60.0)
    def redis_operation() -> int:
        return 1

    assert redis_operation() == 1
    qualified = f"{__name__}.{redis_operation.__qualname__}"
    assert breaker(qualified).breaker_name == qualified


def test_only_listed_exceptions_count(name: str) -> None:
    op = failing(name, failure_threshold=1, exceptions=(ConnectionError,))
    with pytest.raises(KeyError):
        op(KeyError("not a service failure"))
    assert breaker(name).current_state == pybreaker.STATE_CLOSED
    trip(op, 1)
    assert breaker(name).current_state == pybreaker.STATE_OPEN


def test_excluded_exceptions_pass_through_uncounted(name: str) -> None:
    op = failing(name, failure_threshold=2, exclude=(ConnectionRefusedError,))
    trip(op, 1)
    with pytest.raises(ConnectionRefusedError):
        op(ConnectionRefusedError("business as usual"))
    assert breaker(name).fail_counter == 0  # counted as a success: the service answered
    trip(op, 1)
    assert breaker(name).current_state == pybreaker.STATE_CLOSED


def test_every_state_change_is_a_structured_log_record(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    op = failing(name, failure_threshold=2, recovery_timeout=10.0)
    caplog.set_level(logging.INFO, logger="queue_system.resilience.breaker")
    with freeze_time(START) as frozen:
        trip(op, 2)
        frozen.tick(10)
        op()

    records = [r for r in caplog.records if r.name == "queue_system.resilience.breaker"]
    assert [(r.old_state, r.new_state) for r in records] == [  # type: ignore[attr-defined]
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]
    assert {r.breaker for r in records} == {name}  # type: ignore[attr-defined]
    assert records[0].failure_count == 2  # type: ignore[attr-defined]
    assert records[0].levelno == logging.WARNING
    assert records[2].levelno == logging.INFO


def test_registry_reset_closes_breakers_and_forgets_failures(name: str) -> None:
    op = failing(name, failure_threshold=2)
    trip(op, 2)
    with pytest.raises(CircuitBreakerOpenError):
        op()

    breakers.reset()

    assert breaker(name).current_state == pybreaker.STATE_CLOSED
    assert op() == "ok"
    trip(op, 1)
    assert breaker(name).current_state == pybreaker.STATE_CLOSED  # old failures forgotten


def test_sync_calls_run_concurrently_not_under_pybreakers_lock(name: str) -> None:
    both_inside = threading.Barrier(2, timeout=5)

    @circuit_breaker(name=name)
    def op() -> None:
        both_inside.wait()  # breaks (and raises) unless both threads are inside at once

    errors: list[BaseException] = []

    def run() -> None:
        try:
            op()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []


def test_methods_and_metadata_are_kept(name: str) -> None:
    class Client:
        def __init__(self) -> None:
            self.value = 7

        @circuit_breaker(name=name)
        def get(self, key: str, default: int = 0) -> int:
            """Get a key."""
            return self.value

        @circuit_breaker(name=name)
        async def aget(self, key: str) -> int:
            """Get a key, async."""
            return self.value

    client = Client()
    assert client.get("k") == 7
    assert asyncio.run(client.aget("k")) == 7
    assert Client.get.__name__ == "get" and Client.get.__doc__ == "Get a key."
    assert str(inspect.signature(Client.get)) == "(self, key: 'str', default: 'int' = 0) -> 'int'"
    assert inspect.iscoroutinefunction(Client.aget)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("failure_threshold", 0),
        ("recovery_timeout", 0),
        ("half_open_max_calls", 0),
        ("window_size", -1.0),
    ],
)
def test_invalid_settings_name_the_argument(setting: str, value: float) -> None:
    with pytest.raises(ValueError, match=setting):
        circuit_breaker(**{setting: value})  # type: ignore[arg-type]


def test_bare_use_is_a_clear_type_error() -> None:
    def f() -> None:
        pass

    with pytest.raises(TypeError, match=r"@circuit_breaker\(\)"):
        circuit_breaker(f)  # type: ignore[arg-type]


def test_reference_snippet_redis_operations_as_written() -> None:
    # The reference's "Circuit Breaker" snippet, as written (the shared registry is reset).
    attempts: list[int] = []
    try:
        with freeze_time(START) as frozen:

            @circuit_breaker(name="redis_operations", failure_threshold=5, recovery_timeout=30.0)
            def redis_operation() -> str:
                attempts.append(1)
                if len(attempts) <= 5:
                    raise ConnectionError("redis down")
                return "ok"

            for _ in range(5):
                with pytest.raises(ConnectionError):
                    redis_operation()
            with pytest.raises(CircuitBreakerOpenError, match="redis_operations"):
                redis_operation()  # open: rejected at once
            assert len(attempts) == 5
            frozen.tick(30.1)
            assert redis_operation() == "ok"  # the trial call after 30 s closes it
            assert breaker("redis_operations").current_state == "closed"
    finally:
        breakers.reset()
