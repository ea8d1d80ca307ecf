"""A worker publishes its running count when it changes, not only on its 5 s heartbeat."""

from __future__ import annotations

import asyncio

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.ops.admin import QueueAdmin
from tests.support.waiting import async_wait_until

GATE: dict[str, asyncio.Event] = {}


async def wait_for_gate(entity: dict[str, str]) -> None:
    await GATE[entity["gate"]].wait()


def running(config: QueueConfig) -> list[int]:
    return [w["running"] for w in QueueManager(config).get_workers()]


def test_running_count_is_published_within_a_second(config: QueueConfig) -> None:
    config.register_callback(wait_for_gate)

    async def main() -> None:
        GATE["g"] = asyncio.Event()
        worker = QueueWorker(config, max_workers=4)
        await worker.start()
        try:
            # Given a worker whose first heartbeat said 0 running
            await async_wait_until(lambda: running(config) == [0], timeout=5)
            # When two items start, live views see them within a second
            QueueManager(config).enqueue_batch([{"gate": "g"}] * 2, wait_for_gate)
            await async_wait_until(lambda: running(config) == [2], timeout=1.0)
            health = QueueAdmin(config).get_system_health()
            assert health["workers"] is not None and health["workers"]["active"] == 1
            # And when they finish, within a second too
            GATE["g"].set()
            await async_wait_until(lambda: running(config) == [0], timeout=1.0)
        finally:
            await worker.stop()

    asyncio.run(main())
