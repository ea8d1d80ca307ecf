import asyncio
import hashlib

import pytest
import redis

from queue_system.core.clock import SystemClock
from queue_system.engine.outage import RedisOutage, failed_script, is_error_reply
from queue_system.engine.scripts import script_source
from queue_system.errors import QueueUnavailableError


def test_error_replies_are_not_reported_as_outages(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        outage = RedisOutage("w1", SystemClock())
        await outage.wait(redis.ResponseError("ERR user_script:1: boom"))
        outage.recovered()
        await outage.wait(redis.ConnectionError("refused"))

    with caplog.at_level("ERROR", logger="queue_system.worker"):
        asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "error reply" in messages[0] and "not an outage" in messages[0]
    assert "Redis unavailable" in messages[1]


def test_persist_retries_until_redis_accepts() -> None:
    calls: list[int] = []

    async def flaky_write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("down")
        return "written"

    assert asyncio.run(RedisOutage("w1", SystemClock()).persist(flaky_write)) == "written"
    assert len(calls) == 3


def test_persist_gives_up_only_past_the_stop_deadline() -> None:
    async def always_down() -> None:
        raise redis.ConnectionError("down")

    outage = RedisOutage("w1", SystemClock())
    outage.give_up_at = 0.0  # a stop deadline already passed
    assert asyncio.run(outage.persist(always_down)) is None


class SteppedClock(SystemClock):
    """Wall time as usual; monotonic time moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("exc", "bug"),
    [
        (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), True),
        (redis.ResponseError("ERR Error running script (call to f_" + "a" * 40 + "): boom"), True),
        (redis.ResponseError("BUSY Redis is busy running a script."), False),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), False),
        (
            redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
            False,
        ),
        (redis.ConnectionError("refused"), False),
        (redis.TimeoutError("timeout"), False),
    ],
)
def test_error_replies_that_a_retry_cannot_cure_are_bugs(exc: Exception, bug: bool) -> None:
    assert is_error_reply(exc) is bug


def test_the_failed_script_is_named_from_its_sha_in_both_server_formats() -> None:
    sha = hashlib.sha1(script_source("claim").encode()).hexdigest()
    valkey = redis.ResponseError(f"WRONGTYPE Operation... script: {sha}, on @user_script:25.")
    redis62 = redis.ResponseError(f"Error running script (call to f_{sha}): @user_script:25: x")
    assert failed_script(valkey) == failed_script(redis62) == "claim"
    assert failed_script(redis.ResponseError("WRONGTYPE no script here")) is None


def test_error_replies_are_counted_and_each_operation_backs_off_on_its_own() -> None:
    counted: list[str] = []
    outage = RedisOutage("w1", SystemClock(), on_error_reply=counted.append)
    delays = [outage._error_reply(redis.ResponseError("ERR x"), "claim") for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert counted == ["claim"] * 6
    assert outage._backoff("heartbeat", 0.05, 2.0).next() == 0.05  # another operation
    outage.recovered("claim")
    assert outage._error_reply(redis.ResponseError("ERR x"), "claim") == 0.5
    assert not outage.down  # an error reply is not an outage


def test_wait_gives_up_once_redis_is_unreachable_past_the_bound() -> None:
    clock = SteppedClock()
    outage = RedisOutage("w1", clock, give_up_after_s=30.0)

    async def main() -> None:
        await outage.wait(redis.ConnectionError("refused"), "claim")
        clock.now = 29.0
        await outage.wait(redis.ConnectionError("refused"), "claim")
        clock.now = 30.0
        with pytest.raises(QueueUnavailableError, match="unreachable for 30s"):
            await outage.wait(redis.ConnectionError("refused"), "heartbeat")
        outage.recovered("claim")  # Redis answered: a later outage is measured afresh
        await outage.wait(redis.ConnectionError("refused"), "claim")

    asyncio.run(main())


def test_persist_returns_none_once_past_the_outage_bound() -> None:
    clock = SteppedClock()
    outage = RedisOutage("w1", clock, give_up_after_s=1.0)

    async def always_down() -> None:
        clock.now += 0.6
        raise redis.ConnectionError("down")

    assert asyncio.run(outage.persist(always_down)) is None
