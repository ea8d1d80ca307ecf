"""The ready index: a claim's cost does not grow with the number of idle queues.

Every script that pushes onto a waiting list adds the list to ``KeySpace.ready``; with more
than ``CLAIM_INDEX_MIN_QUEUES`` queues the worker passes only the indexed lists to the claim.
What a claim costs is measured by the keys the claim script receives, read from the server's
own SLOWLOG (every EVALSHA is logged with its arguments; the third is the key count).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueAdmin, QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.engine.scripts import script_source
from queue_system.worker import fetch
from queue_system.worker.fetch import CLAIM_INDEX_MIN_QUEUES
from queue_system.worker.store import ClaimedItem, WorkerBroker
from tests.support.burst import run_burst
from tests.support.waiting import async_wait_until

RUNS: list[str] = []
CLAIM_SHA = hashlib.sha1(script_source("claim").encode()).hexdigest()
FIXED_CLAIM_KEYS = 8  # claim.lua's KEYS before the waiting lists
KEYS_PER_LIST = 3  # each waiting list comes with its queue's two limit keys
IDLE = [f"idle{n:04d}" for n in range(1000)]


def record(data: dict) -> None:
    RUNS.append(data["n"])


def fail(data: dict) -> None:
    raise ValueError("no")


ClaimSizes = Callable[[], list[int]]


@pytest.fixture
def claim_sizes(raw_redis: redis.Redis, config_keys_inflight: str) -> Iterator[ClaimSizes]:
    """The waiting lists each claim of this test passed to claim.lua, from the SLOWLOG."""
    saved = {
        name: raw_redis.config_get(name)[name]
        for name in ("slowlog-log-slower-than", "slowlog-max-len")
    }
    raw_redis.config_set("slowlog-log-slower-than", 0)
    raw_redis.config_set("slowlog-max-len", 100_000)
    raw_redis.slowlog_reset()

    def sizes() -> list[int]:
        found = []
        for entry in raw_redis.execute_command("SLOWLOG", "GET", 100_000):
            args = [bytes(a) for a in entry[3]]
            claim = args[0].upper() == b"EVALSHA" and args[1].decode() == CLAIM_SHA
            if claim and args[3].decode() == config_keys_inflight:  # this test's namespace
                found.append((int(args[2]) - FIXED_CLAIM_KEYS) // KEYS_PER_LIST)
        return found

    try:
        yield sizes
    finally:
        for name, value in saved.items():
            raw_redis.config_set(name, value)


@pytest.fixture
def wide(make_config: Callable[..., QueueConfig]) -> QueueConfig:
    """A namespace allowed more than the 1,000 idle queues."""
    return make_config(max_queues=2 * len(IDLE))


@pytest.fixture
def config_keys_inflight(key_prefix: str) -> str:
    return f"{key_prefix}inflight"


def many_queues(raw_redis: redis.Redis, config: QueueConfig, names: list[str] = IDLE) -> None:
    """Queues used once and idle now: registered, with nothing waiting."""
    raw_redis.sadd(config.keys.registry, *names)


async def claim_from_index(broker: WorkerBroker, names: list[str], count: int) -> list[ClaimedItem]:
    """What the fetcher does above CLAIM_INDEX_MIN_QUEUES: the indexed lists, in claim order."""
    ready = await broker.ready_lists()
    lists = [key for key in broker.keys.claim_order(names) if key in ready]
    return await broker.claim(lists, count, prune=True)


def with_broker(config: QueueConfig, body: Callable[[WorkerBroker], Any]) -> Any:
    async def main() -> Any:
        client = config.make_async_client()
        try:
            return await body(WorkerBroker(config, client, "w"))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_a_claim_gets_only_non_empty_lists_among_1000_idle_queues(
    wide: QueueConfig, raw_redis: redis.Redis, claim_sizes: ClaimSizes
) -> None:
    RUNS.clear()
    many_queues(raw_redis, wide)
    QueueManager(wide).enqueue_batch([{"n": f"b{i}"} for i in range(5)], record, queue_name="busy")
    run_burst(wide, max_workers=2)
    assert sorted(RUNS) == [f"b{i}" for i in range(5)]
    sizes = claim_sizes()
    assert sizes, "no claim was logged"
    # Each claim names at most the one busy list, not 3 x 1,001 lists.
    assert max(sizes) <= 1, sizes
    assert raw_redis.smembers(wide.keys.ready) == set()  # drained lists left the index


def test_strict_priority_across_queues_and_tiers_with_the_index(
    config: QueueConfig, raw_redis: redis.Redis, claim_sizes: ClaimSizes
) -> None:
    RUNS.clear()
    many_queues(raw_redis, config, IDLE[:CLAIM_INDEX_MIN_QUEUES])
    manager = QueueManager(config)
    # Enqueued lowest first, so FIFO alone would give the opposite order.
    for queue, priority in [("c", "low"), ("a", "low"), ("b", "normal"), ("a", "high")]:
        for i in range(2):
            entity = {"n": f"{queue}-{priority}-{i}"}
            manager.enqueue(entity, record, queue_name=queue, priority=priority)
    run_burst(config, max_workers=1, prefetch=0)
    tiers = [("a", "high"), ("b", "normal"), ("a", "low"), ("c", "low")]
    expected = [f"{queue}-{priority}-{i}" for queue, priority in tiers for i in range(2)]
    assert expected == RUNS
    assert max(claim_sizes()) <= 4  # the 4 lists holding items, never the 3 x 36 registered


def test_items_waiting_from_before_the_index_are_claimed(
    wide: QueueConfig, raw_redis: redis.Redis, claim_sizes: ClaimSizes
) -> None:
    RUNS.clear()
    many_queues(raw_redis, wide)
    QueueManager(wide).enqueue_batch([{"n": i} for i in range(3)], record, queue_name="old")
    raw_redis.delete(wide.keys.ready)  # as a version without the index left them
    # A long-running worker (a burst's end-of-run check would sweep anyway), well before its
    # second sweep (INDEX_SWEEP_S): the sweep of its first maintenance pass finds them.
    worker = QueueWorker(wide)

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        try:
            await async_wait_until(lambda: sorted(RUNS) == [0, 1, 2], timeout=10)
        finally:
            await worker.stop()
            await task

    asyncio.run(main())
    assert max(claim_sizes()) <= 1


def swept(worker: QueueWorker) -> bool:
    """The worker's fetcher exists (start() made it) and has swept the lists once."""
    fetcher = getattr(worker, "_fetch", None)
    return fetcher is not None and fetcher._next_sweep > 0


def test_a_running_worker_finds_items_the_index_missed_at_its_next_sweep(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    claim_sizes: ClaimSizes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An older producer (rolling deploy) pushes without indexing the list.
    RUNS.clear()
    monkeypatch.setattr(fetch, "INDEX_SWEEP_S", 0.2)  # sweeps every maintenance pass
    config = make_config(max_queues=2 * len(IDLE))
    many_queues(raw_redis, config)
    late = config.keys.queue("late")
    QueueManager(config).enqueue({"n": "late"}, record, queue_name="late")
    raw = raw_redis.rpop(late)  # kept aside: the worker starts with nothing waiting
    raw_redis.delete(config.keys.ready)
    worker = QueueWorker(config)

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        try:
            # Once its first sweep is done, the item arrives the old way: LPUSH, no index.
            await async_wait_until(lambda: swept(worker), timeout=10)
            raw_redis.lpush(late, raw)
            await async_wait_until(lambda: RUNS == ["late"], timeout=10)
        finally:
            await worker.stop()
            await task

    asyncio.run(main())
    assert max(claim_sizes()) <= 1


def test_a_stale_index_entry_is_removed_by_the_next_claim(
    wide: QueueConfig, raw_redis: redis.Redis
) -> None:
    many_queues(raw_redis, wide)
    stale = [wide.keys.queue(IDLE[7], "high"), wide.keys.queue(IDLE[9], "low")]
    raw_redis.sadd(wide.keys.ready, *stale)
    QueueManager(wide).enqueue({"n": 1}, record, queue_name="busy")
    claimed = with_broker(wide, lambda b: claim_from_index(b, [*IDLE, "busy"], 10))
    assert len(claimed) == 1
    assert raw_redis.smembers(wide.keys.ready) == set()


def test_a_list_with_items_left_stays_indexed(config: QueueConfig, raw_redis: redis.Redis) -> None:
    QueueManager(config).enqueue_batch([{"n": i} for i in range(3)], record, queue_name="q")
    claimed = with_broker(config, lambda b: claim_from_index(b, ["q"], 3 - 1))
    assert len(claimed) == 2
    assert raw_redis.smembers(config.keys.ready) == {config.keys.queue("q").encode()}


def _claim_the_only_item(config: QueueConfig, raw_redis: redis.Redis) -> None:
    QueueManager(config).enqueue({"n": 1}, record, queue_name="q")
    assert len(with_broker(config, lambda b: claim_from_index(b, ["q"], 1))) == 1
    assert raw_redis.smembers(config.keys.ready) == set()  # the claim emptied it


def test_an_item_back_from_an_expired_lease_is_indexed(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.3)
    _claim_the_only_item(config, raw_redis)

    async def recover_then_claim(broker: WorkerBroker) -> list[ClaimedItem]:
        async def recovered() -> bool:
            return (await broker.maintain(config.clock.time())).requeued == 1

        await async_wait_until(recovered, timeout=5)
        return await claim_from_index(broker, ["q"], 1)

    assert len(with_broker(config, recover_then_claim)) == 1


def test_a_released_item_is_indexed(config: QueueConfig, raw_redis: redis.Redis) -> None:
    QueueManager(config).enqueue({"n": 1}, record, queue_name="q")

    async def claim_release_claim(broker: WorkerBroker) -> list[ClaimedItem]:
        [item] = await claim_from_index(broker, ["q"], 1)
        assert await broker.release([item.token]) == 1
        return await claim_from_index(broker, ["q"], 1)

    assert len(with_broker(config, claim_release_claim)) == 1


def test_a_promoted_retry_is_indexed(make_config: Callable[..., QueueConfig]) -> None:
    config = make_config()
    retry = QueueRetryConfig(max_attempts=2, delays=[0], jitter=0)
    QueueManager(config).enqueue({"n": 1}, fail, queue_name="q", retry_config=retry)

    async def claim_retry_promote_claim(broker: WorkerBroker) -> list[ClaimedItem]:
        [item] = await claim_from_index(broker, ["q"], 1)
        scheduled = await broker.schedule_retry(
            item,
            item.raw,
            config.clock.time(),
            operation_id=json.loads(item.raw)["id"],
            run_ms=1,
            queue_priority="q:normal",
            wait_ms=1,
            attempts=1,
            last_error="{}",
        )
        assert scheduled
        assert (await broker.maintain(config.clock.time() + 1)).promoted == 1
        return await claim_from_index(broker, ["q"], 1)

    assert len(with_broker(config, claim_retry_promote_claim)) == 1


def test_a_requeued_dead_letter_is_indexed(config: QueueConfig, raw_redis: redis.Redis) -> None:
    once = QueueRetryConfig(max_attempts=1, delays=[0], jitter=0)
    QueueManager(config).enqueue({"n": 1}, fail, queue_name="q", retry_config=once)
    run_burst(config)
    assert raw_redis.llen(config.keys.failures) == 1
    raw_redis.delete(config.keys.ready)  # whatever the run left
    assert QueueAdmin(config).requeue(all=True)["count"] == 1
    assert len(with_broker(config, lambda b: claim_from_index(b, ["q"], 1))) == 1


def test_a_purge_that_empties_a_list_removes_it_from_the_index(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    manager = QueueManager(config)
    manager.enqueue_batch([{"n": i} for i in range(5)], record, queue_name="q")
    assert raw_redis.sismember(config.keys.ready, config.keys.queue("q"))
    assert manager.purge_queue("q") == 5
    assert raw_redis.smembers(config.keys.ready) == set()
