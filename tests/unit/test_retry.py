"""retry_with_backoff on tenacity: counts, delays, deadline, filtering, re-raise; sync and async.

Sleeps are injected and recorded, never taken; the deadline test advances a frozen clock.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

import pytest
from freezegun import freeze_time

from utils import retry_with_backoff


class Flaky:
    """Raises the given errors in order, then returns ``"ok"``; records every call."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retries_until_success() -> None:
    delays: list[float] = []
    flaky = Flaky(ConnectionError("1"), ConnectionError("2"))
    op = retry_with_backoff(max_retries=3, base_delay=0.5, sleep=delays.append)(flaky)

    assert op() == "ok"
    assert flaky.calls == 3
    assert len(delays) == 2


def test_gives_up_after_max_retries_and_reraises_the_last_real_error() -> None:
    delays: list[float] = []
    errors = [ConnectionError(f"attempt {n}") for n in range(1, 5)]
    flaky = Flaky(*errors)
    op = retry_with_backoff(
        max_retries=3, base_delay=0.5, exceptions=(ConnectionError,), sleep=delays.append
    )(flaky)

    with pytest.raises(ConnectionError) as raised:
        op()
    assert raised.value is errors[-1]
    assert flaky.calls == 4
    assert len(delays) == 3


def test_delays_grow_exponentially_with_jitter_and_are_capped_by_max_delay() -> None:
    delays: list[float] = []
    base, cap = 0.5, 3.0
    op = retry_with_backoff(max_retries=6, base_delay=base, max_delay=cap, sleep=delays.append)(
        Flaky(*[OSError("x")] * 7)
    )

    with pytest.raises(OSError):
        op()

    assert len(delays) == 6
    for retry, delay in enumerate(delays, start=1):
        floor = base * 2 ** (retry - 1)
        assert min(floor, cap) <= delay <= min(floor + base, cap)
    assert delays == sorted(delays)
    assert delays[-1] == cap


def test_only_listed_exceptions_are_retried() -> None:
    delays: list[float] = []
    flaky = Flaky(KeyError("not transient"))
    op = retry_with_backoff(exceptions=(ConnectionError,), sleep=delays.append)(flaky)

    with pytest.raises(KeyError):
        op()
    assert flaky.calls == 1
    assert delays == []


def test_default_retries_any_exception_but_not_base_exceptions() -> None:
    class Interrupt(BaseException):
        pass

    retried = Flaky(ValueError("x"))
    interrupted = Flaky(Interrupt())
    assert retry_with_backoff(sleep=lambda _: None)(retried)() == "ok"
    with pytest.raises(Interrupt):
        retry_with_backoff(sleep=lambda _: None)(interrupted)()
    assert (retried.calls, interrupted.calls) == (2, 1)


def test_total_timeout_stops_retrying_before_the_deadline() -> None:
    delays: list[float] = []
    flaky = Flaky(*[ConnectionError("down")] * 100)
    with freeze_time("2030-01-01") as frozen:

        def sleep(seconds: float) -> None:
            delays.append(seconds)
            frozen.tick(seconds)

        op = retry_with_backoff(
            max_retries=99, base_delay=1.0, max_delay=1.0, total_timeout=5.0, sleep=sleep
        )(flaky)
        with pytest.raises(ConnectionError):
            op()

    # Each delay is exactly 1 s (capped): retries start at t=1..4; one at t=5 would be late.
    assert delays == [1.0] * 4
    assert flaky.calls == 5


def test_slow_attempts_count_toward_total_timeout() -> None:
    delays: list[float] = []
    with freeze_time("2030-01-01") as frozen:

        def slow_failure() -> None:
            frozen.tick(10)
            raise ConnectionError("slow and down")

        op = retry_with_backoff(total_timeout=5.0, sleep=delays.append)(slow_failure)
        with pytest.raises(ConnectionError, match="slow and down"):
            op()
    assert delays == []


def test_each_retry_is_logged_with_attempt_and_delay(caplog: pytest.LogCaptureFixture) -> None:
    delays: list[float] = []
    op = retry_with_backoff(max_retries=2, base_delay=0.25, sleep=delays.append)(
        Flaky(ConnectionError("a"), ConnectionError("b"))
    )
    caplog.set_level(logging.WARNING, logger="queue_system.resilience.retry")

    op()

    records = [r for r in caplog.records if r.name == "queue_system.resilience.retry"]
    assert [r.attempt for r in records] == [1, 2]  # type: ignore[attr-defined]
    assert [r.delay_s for r in records] == delays  # type: ignore[attr-defined]
    assert all(r.levelno == logging.WARNING for r in records)
    assert "attempt 1 of at most 3" in records[0].getMessage()
    assert "ConnectionError" in records[0].getMessage()


def test_async_retries_with_an_injected_async_sleep() -> None:
    delays: list[float] = []
    errors = [ConnectionError(str(n)) for n in range(3)]
    calls = 0

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    @retry_with_backoff(max_retries=2, base_delay=0.1, max_delay=1.0, sleep=record_sleep)
    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise errors[calls - 1]

    with pytest.raises(ConnectionError) as raised:
        asyncio.run(fetch())
    assert raised.value is errors[-1]
    assert calls == 3
    assert len(delays) == 2
    assert 0.1 <= delays[0] <= 0.2 <= delays[1] <= 0.3


def test_async_total_timeout_with_a_frozen_clock() -> None:
    async def scenario(frozen: Any) -> tuple[str, list[float]]:
        delays: list[float] = []
        attempts = 0

        async def sleep(seconds: float) -> None:
            delays.append(seconds)
            frozen.tick(seconds)

        @retry_with_backoff(
            max_retries=10, base_delay=1.0, max_delay=1.0, total_timeout=3.5, sleep=sleep
        )
        async def fetch() -> str:
            nonlocal attempts
            attempts += 1
            raise ConnectionError(f"attempt {attempts}")

        with pytest.raises(ConnectionError) as raised:
            await fetch()
        return str(raised.value), delays

    with freeze_time("2030-01-01", real_asyncio=True) as frozen:
        message, delays = asyncio.run(scenario(frozen))
    # Retries start at t=1, 2, 3 s; one at t=4 s would pass the 3.5 s deadline.
    assert delays == [1.0, 1.0, 1.0]
    assert message == "attempt 4"


def test_methods_and_metadata_are_kept() -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @retry_with_backoff(max_retries=1, sleep=lambda _: None)
        def get(self, key: str, default: int = 0) -> int:
            """Get a key."""
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("first")
            return self.calls

        @retry_with_backoff(max_retries=1)
        async def aget(self, key: str) -> str:
            """Get a key, async."""
            return key

    client = Client()
    assert client.get("k") == 2
    assert asyncio.run(client.aget("k")) == "k"
    assert (Client.get.__name__, Client.get.__doc__) == ("get", "Get a key.")
    assert str(inspect.signature(Client.get)) == "(self, key: 'str', default: 'int' = 0) -> 'int'"
    assert inspect.iscoroutinefunction(Client.aget)


def test_reference_snippets_run_as_written() -> None:
    @retry_with_backoff(max_retries=3, base_delay=0.5, exceptions=(ConnectionError,))
    def network_operation() -> str:
        return "ok"

    @retry_with_backoff(max_retries=5, base_delay=1.0, max_delay=30.0)
    def connect() -> str:
        return "ok"

    assert network_operation() == connect() == "ok"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"base_delay": 2.0, "max_delay": 1.0}, "max_delay"),
        ({"total_timeout": 0}, "total_timeout"),
    ],
)
def test_invalid_settings_name_the_argument(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retry_with_backoff(**settings)  # type: ignore[arg-type]


def test_bare_use_is_a_clear_type_error() -> None:
    func: Callable[[], None] = lambda: None  # noqa: E731
    with pytest.raises(TypeError, match=r"@retry_with_backoff\(\)"):
        retry_with_backoff(func)  # type: ignore[arg-type]
