"""supervise(): loops restart after any error; one that cannot resume is fatal, loudly."""

from __future__ import annotations

import asyncio

import pytest
import redis

from queue_system.core.clock import SystemClock
from queue_system.engine import outage as outage_module
from queue_system.engine.outage import RedisOutage
from queue_system.errors import QueueUnavailableError, WorkerLoopError
from queue_system.worker import supervision
from queue_system.worker.supervision import supervise


@pytest.fixture(autouse=True)
def _fast_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "CRASH_BACKOFF_MIN_S", 0.001)
    monkeypatch.setattr(supervision, "CRASH_BACKOFF_MAX_S", 0.001)
    monkeypatch.setattr(outage_module, "BACKOFF_MIN_S", 0.001)
    monkeypatch.setattr(outage_module, "BACKOFF_MAX_S", 0.001)


def run(
    body_errors: list[BaseException], outage: RedisOutage | None = None
) -> tuple[int, list[BaseException]]:
    """Supervise a body that raises ``body_errors`` one per run, then returns; (runs, fatal)."""
    runs = 0
    fatal: list[BaseException] = []

    async def body() -> None:
        nonlocal runs
        runs += 1
        if body_errors:
            raise body_errors.pop(0)

    async def main() -> None:
        await supervise(
            "fetcher",
            body,
            outage=outage or RedisOutage("w1", SystemClock()),
            clock=SystemClock(),
            on_fatal=fatal.append,
        )

    asyncio.run(main())
    return runs, fatal


def test_a_loop_is_restarted_after_any_error_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    runs, fatal = run([KeyError("bug"), redis.ConnectionError("down"), ValueError("bad")])
    assert (runs, fatal) == (4, [])
    assert "the fetcher loop failed (1 in a row)" in caplog.text


def test_a_loop_failing_again_and_again_is_fatal() -> None:
    errors: list[BaseException] = [RuntimeError(f"bug {i}") for i in range(10)]
    runs, [fatal] = run(errors)
    assert runs == supervision.MAX_CONSECUTIVE_FAILURES
    assert isinstance(fatal, WorkerLoopError)
    assert "fetcher loop failed 5 times in a row" in str(fatal) and "bug 4" in str(fatal)


def test_redis_errors_are_never_fatal_by_themselves() -> None:
    errors: list[BaseException] = [redis.ConnectionError("down") for _ in range(8)]
    runs, fatal = run(errors)
    assert (runs, fatal) == (9, [])


def test_redis_unreachable_past_the_outage_limit_is_fatal() -> None:
    outage = RedisOutage("w1", SystemClock(), give_up_after_s=1e-9)
    errors: list[BaseException] = [redis.ConnectionError("down") for _ in range(8)]
    runs, [fatal] = run(errors, outage)
    assert isinstance(fatal, QueueUnavailableError)
    assert runs == 2  # the first error starts the outage, the second passes the bound
