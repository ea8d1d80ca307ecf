"""stop() returns as soon as the running items are done: no background loop holds it up.

Found while measuring recycling (``--max-jobs``): a stop right after running items finished
took 5.3 s with 0.5 s items, because the heartbeat loop (woken by the running count's
change) was not ending on the worker's close and slept out its heartbeat interval; the
worker waited for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from tests.integration import procs_app
from tests.support.waiting import async_wait_until


def test_stop_after_running_items_finish_is_not_held_up_by_the_heartbeat(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    redis_url: str,
    key_prefix: str,
) -> None:
    config = make_config(lease_timeout=2.0)
    config.register_callback(procs_app.job)
    keys = {
        "started_key": f"{key_prefix}s",
        "done_key": f"{key_prefix}d",
        "pids_key": f"{key_prefix}p",
    }
    entities = [{"url": redis_url, "n": n, "seconds": 0.5, **keys} for n in range(30)]
    QueueManager(config).enqueue_batch(entities, procs_app.job)
    stop_took: list[float] = []

    async def main() -> None:
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        await async_wait_until(lambda: raw_redis.llen(keys["started_key"]) == 2)
        began = time.monotonic()
        await worker.stop()
        stop_took.append(time.monotonic() - began)

    asyncio.run(main())
    # The stop waited for the running items (0.5 s), not for a heartbeat interval (5 s)
    assert stop_took[0] < 2.5, stop_took
    assert raw_redis.llen(keys["done_key"]) == 2
    assert raw_redis.hlen(config.keys.inflight) == 0
