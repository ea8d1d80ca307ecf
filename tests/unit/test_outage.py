import asyncio

import pytest
import redis

from queue_system.core.clock import SystemClock
from queue_system.engine.outage import RedisOutage


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
