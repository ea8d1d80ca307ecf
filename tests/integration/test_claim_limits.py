"""Claims of any size: no item is lost to a limit inside a script (Lua's ``unpack``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis

from queue_system import QueueConfig, QueueManager
from queue_system.worker.store import WorkerBroker
from tests.support.burst import run_burst

ITEMS = 5000
RAN: list[int] = []


async def job(data: dict) -> None:
    RAN.append(data["n"])


def enqueue(config: QueueConfig, count: int) -> None:
    manager = QueueManager(config)
    for start in range(0, count, 1000):
        manager.enqueue_batch([{"n": n} for n in range(start, min(start + 1000, count))], job)


def test_a_claim_of_5000_items_loses_none(config: QueueConfig, raw_redis: redis.Redis) -> None:
    enqueue(config, ITEMS)

    async def main() -> int:
        client = config.make_async_client()
        try:
            items = await WorkerBroker(config, client, "w").claim(
                config.keys.claim_order(["job"]), ITEMS
            )
        finally:
            await client.aclose()
        return len(items)

    claimed = asyncio.run(main())
    # A claim is capped (MAX_CLAIM_ITEMS); every item is either leased or still waiting
    from queue_system.worker.store import MAX_CLAIM_ITEMS

    assert claimed == MAX_CLAIM_ITEMS
    assert raw_redis.hlen(config.keys.inflight) == claimed
    assert raw_redis.llen(config.get_queue_key("job")) == ITEMS - claimed


def test_the_claim_script_leases_any_count_in_one_call(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # The cap is a policy of the worker; the script itself has no size cliff.
    enqueue(config, ITEMS)

    async def main() -> list[bytes]:
        client = config.make_async_client()
        try:
            broker = WorkerBroker(config, client, "w")
            lists = config.keys.claim_order(["job"])
            return await broker.scripts.claim(  # type: ignore[no-any-return]
                keys=broker.claim_keys(lists, "big-call"),
                args=broker.claim_args(ITEMS, start_now=ITEMS, prune=False, list_keys=lists),
            )
        finally:
            await client.aclose()

    answer = asyncio.run(main())
    assert int(answer[0]) == ITEMS  # every item is marked started, as asked
    assert (len(answer) - 2) // 3 == ITEMS
    assert raw_redis.hlen(config.keys.inflight) == ITEMS
    assert raw_redis.zcard(config.keys.leases) == ITEMS
    assert raw_redis.scard(config.keys.started) == ITEMS
    assert raw_redis.llen(config.get_queue_key("job")) == 0


def test_a_worker_with_2000_executors_runs_5000_items_once_each(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    RAN.clear()
    config = make_config()
    enqueue(config, ITEMS)
    run_burst(config, max_workers=2000)
    assert sorted(RAN) == list(range(ITEMS))
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert config.get_metrics()["succeeded"] == ITEMS
