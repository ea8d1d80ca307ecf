"""Stopping a worker cancels its running async processors, on every supported Python
(finding 11 of issue 10: on 3.10 they ran on after their item was released).

Run under 3.10 too::

    PYTHON=/root/.pyenv/versions/3.10.13/bin/python QUEUE_SYSTEM_VENV=.venv310 \\
        ./scripts/test tests/integration/test_stop_cancels.py tests/unit/test_call.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from tests.support.waiting import async_wait_until

EVENTS: list[Any] = []


async def loops_until_cancelled(data: dict) -> None:
    EVENTS.append("started")
    try:
        while True:
            await asyncio.sleep(0.01)
            EVENTS.append("tick")
    except asyncio.CancelledError:
        EVENTS.append("cancelled")
        raise


def test_stop_past_the_grace_period_cancels_the_running_processor(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    EVENTS.clear()
    QueueManager(config).enqueue({"n": 1}, loops_until_cancelled)

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        await async_wait_until(lambda: "tick" in EVENTS)
        await worker.stop(grace_period=0.1)
        # Once stop() returned, the processor was cancelled and runs no more
        ticks = EVENTS.count("tick")
        await asyncio.sleep(0.1)  # time in which a live processor would tick ~10 times
        assert EVENTS.count("tick") == ticks, "the processor runs on after stop()"

    asyncio.run(main())
    assert "cancelled" in EVENTS
    assert raw_redis.llen(config.keys.queue("loops_until_cancelled")) == 1  # released
