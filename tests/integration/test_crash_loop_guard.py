"""The crash-loop guard counts only items that started: prefetched ones return untouched."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import script_source
from queue_system.worker.store import ClaimedItem, Completion, WorkerBroker
from tests.support.burst import run_burst
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until, wait_until

ROOT = Path(__file__).resolve().parents[2]
CRASH_ENV = "QS_TEST_CRASH_CHILD"  # set only in the child process: there the poison kills it
RAN: list[str] = []

WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from queue_system import QueueConfig, QueueWorker
    from tests.integration.test_crash_loop_guard import fine, poison
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2], lease_timeout=1.0)
    config.register_callback(poison)
    config.register_callback(fine)
    asyncio.run(QueueWorker(config, max_workers=1, prefetch=4).run())
    """
)


async def poison(data: dict) -> None:
    """Kills the worker process it runs in (only in the child); records a run elsewhere."""
    if os.environ.get(CRASH_ENV):
        os._exit(17)
    RAN.append("poison")


async def fine(data: dict) -> None:
    RAN.append(data["name"])


def lease_expired(raw_redis: redis.Redis, config: QueueConfig) -> bool:
    """True once every lease's deadline is behind the server's clock (leases use TIME)."""
    seconds, micros = raw_redis.time()
    now_ms = seconds * 1000 + micros // 1000
    return not raw_redis.zrangebyscore(config.keys.leases, now_ms, "+inf")


def waiting_numbers(raw_redis: redis.Redis, config: QueueConfig) -> list[int]:
    """Entity ``n`` of each waiting item, in the order workers will take them."""
    items = reversed(raw_redis.lrange(config.get_queue_key("job"), 0, -1))
    return [json.loads(item)["entity"]["n"] for item in items]


async def job(data: dict) -> None:
    RAN.append(str(data["n"]))


def test_prefetched_items_that_never_started_come_back_untouched(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2, max_deliveries=2)
    QueueManager(config).enqueue_batch([{"n": n} for n in range(12)], job)
    keys = config.keys.claim_order(["job"])

    async def main() -> None:
        client = config.make_async_client()
        live = WorkerBroker(config, client, "live")
        for round_ in range(3):
            # Given a worker that prefetches every item and dies before starting any
            dead = WorkerBroker(config, client, f"dead-{round_}")
            assert len(await dead.claim(keys, 100)) == 12
            await async_wait_until(lambda: lease_expired(raw_redis, config), timeout=5)
            # When its leases are recovered
            state = await live.maintain(config.clock.time())
            # Then every item is back, in claim order, and none counts as a crash loop
            assert state.requeued == 12 and state.crash_looped == []
            assert waiting_numbers(raw_redis, config) == list(range(12))
        await client.aclose()

    asyncio.run(main())
    assert raw_redis.llen(config.keys.system_errors) == 0
    assert raw_redis.hlen(config.keys.redeliveries) == 0


def test_an_item_that_started_counts_each_expiry(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2, max_deliveries=2)
    op = QueueManager(config).enqueue({"n": 1}, job)
    keys = config.keys.claim_order(["job"])

    async def main() -> list[int]:
        client = config.make_async_client()
        live = WorkerBroker(config, client, "live")
        counts = []
        for round_ in range(2):
            dead = WorkerBroker(config, client, f"dead-{round_}")
            [item] = await dead.claim(keys, 1)
            await dead.mark_started(item)
            await async_wait_until(lambda: lease_expired(raw_redis, config), timeout=5)
            state = await live.maintain(config.clock.time())
            counts.extend(expiries for _, expiries in state.crash_looped)
            if state.requeued:
                counts.append(int(raw_redis.hget(config.keys.redeliveries, op["operation_id"])))
        await client.aclose()
        return counts

    # The first expiry is counted, the second reaches max_deliveries: a crash loop
    assert asyncio.run(main()) == [1, 2]


@pytest.mark.slow
def test_a_crashing_item_does_not_take_its_prefetched_neighbours_down(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    RAN.clear()
    config = make_config(lease_timeout=1.0, max_deliveries=2)
    manager = QueueManager(config)
    op = manager.enqueue({"name": "poison"}, poison, priority="high")
    for name in ("a", "b", "c", "d"):
        manager.enqueue({"name": name}, fine)
    # Given a worker process that prefetches all five items and dies running the first one
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", WORKER_CHILD, redis_url, key_prefix],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), CRASH_ENV: "1"},
        )
        try:
            assert child.wait(timeout=30) == 17  # the poison ran and killed it
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        wait_until(lambda: lease_expired(raw_redis, config), timeout=10)
    # When a healthy worker takes over
    run_burst(config)
    # Then only the item that crashed its workers twice is a crash loop; the others ran
    assert sorted(RAN) == ["a", "b", "c", "d"]
    [stored] = raw_redis.lrange(config.keys.system_errors, 0, -1)
    record = json.loads(stored)
    assert record["reason"] == "crash_loop" and record["operation_id"] == op["operation_id"]


# --- the start marks themselves ---------------------------------------------------------------


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    raw_redis.script_load(script_source("start"))
    with FaultProxy(redis_server.port) as made:
        yield made


def start_calls(proxy: FaultProxy) -> int:
    return proxy.requests_matching(
        hashlib.sha1(script_source("start").encode()).hexdigest().encode()
    )


def started_tokens(raw_redis: redis.Redis, config: QueueConfig) -> set[str]:
    return {t.decode() for t in raw_redis.smembers(config.keys.started)}


def test_the_claim_marks_the_items_free_executors_take_at_once(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    QueueManager(config).enqueue_batch([{"n": n} for n in range(3)], job)

    async def main() -> list[ClaimedItem]:
        client = config.make_async_client()
        try:
            return await WorkerBroker(config, client, "w").claim(
                config.keys.claim_order(["job"]), 3, start_now=2
            )
        finally:
            await client.aclose()

    items = asyncio.run(main())
    assert [i.started for i in items] == [True, True, False]
    assert started_tokens(raw_redis, config) == {items[0].token, items[1].token}


def test_items_starting_together_share_one_call_and_lost_leases_are_not_marked(
    make_config: Callable[..., QueueConfig], proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    config = make_config(redis_url=proxy.url)
    QueueManager(config).enqueue_batch([{"n": n} for n in range(5)], job)

    async def main() -> list[ClaimedItem]:
        client = config.make_async_client()
        try:
            broker = WorkerBroker(config, client, "w")
            items = await broker.claim(config.keys.claim_order(["job"]), 5)
            raw_redis.hdel(config.keys.inflight, items[4].token)  # taken over meanwhile
            await asyncio.gather(*(broker.mark_started(item) for item in items))
            return items
        finally:
            await client.aclose()

    items = asyncio.run(main())
    assert start_calls(proxy) == 1
    assert started_tokens(raw_redis, config) == {i.token for i in items[:4]}


def test_start_marks_ride_along_with_an_ack_sent_at_the_same_moment(
    make_config: Callable[..., QueueConfig], proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    config = make_config(redis_url=proxy.url)
    QueueManager(config).enqueue_batch([{"n": n} for n in range(2)], job)

    async def main() -> list[ClaimedItem]:
        client = config.make_async_client()
        try:
            broker = WorkerBroker(config, client, "w")
            done, starting = await broker.claim(config.keys.claim_order(["job"]), 2)
            op = json.loads(done.raw)["id"]
            completion = Completion(
                item=done,
                operation_id=op,
                dedup_key=None,
                run_ms=1,
                queue_priority="job:normal",
                wait_ms=1,
                result_json="null",
                result_ttl=60,
            )
            # An executor finished one item and starts the next while the ack goes out
            marking = asyncio.ensure_future(broker.mark_started(starting))
            await asyncio.sleep(0)  # the executor is now waiting for its mark
            assert await broker.ack([completion], 1.0) == [True]
            await marking
            return [done, starting]
        finally:
            await client.aclose()

    _, starting = asyncio.run(main())
    assert start_calls(proxy) == 0
    assert started_tokens(raw_redis, config) == {starting.token}
