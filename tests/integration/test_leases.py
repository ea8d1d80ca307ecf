"""At-least-once: leases, recovery of dead workers' items, fencing, crash loops, renewal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.worker.store import Completion, WorkerBroker
from tests.support.burst import run_burst
from tests.support.waiting import async_wait_until

RUNS: list[Any] = []


async def job(data: dict) -> str:
    RUNS.append(data["n"])
    return "done"


async def long_job(data: dict) -> str:
    RUNS.append(("start", data["n"]))
    await asyncio.sleep(data["seconds"])
    RUNS.append(("end", data["n"]))
    return "done"


def short_lease_config(make_config: Callable[..., QueueConfig], **kwargs: Any) -> QueueConfig:
    return make_config(lease_timeout=0.3, **kwargs)


def test_claimed_then_abandoned_item_is_recovered_and_run_once(
    make_config: Callable[..., QueueConfig],
) -> None:
    RUNS.clear()
    config = short_lease_config(make_config)
    QueueManager(config).enqueue({"n": 1}, job)

    async def abandon() -> None:
        # Given a worker that claims the item and then dies (never acks, never renews)
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "dead-worker")
        [item] = await broker.claim(config.keys.claim_order(["job"]), 10)
        assert item.raw
        await client.aclose()

    asyncio.run(abandon())
    # When a live worker runs, the expired lease is recovered and the item runs exactly once
    run_burst(config)
    assert RUNS == [1]


def test_fencing_a_taken_over_lease_cannot_ack(make_config: Callable[..., QueueConfig]) -> None:
    config = short_lease_config(make_config)
    QueueManager(config).enqueue({"n": 1}, job)

    async def main() -> None:
        client = config.make_async_client()
        a = WorkerBroker(config, client, "worker-a")
        b = WorkerBroker(config, client, "worker-b")
        keys = config.keys.claim_order(["job"])
        [mine] = await a.claim(keys, 1)
        # A's lease expires and B recovers and claims the item
        await async_wait_until(lambda: _recovered(b, config), timeout=5)
        [theirs] = await b.claim(keys, 1)
        assert theirs.raw == mine.raw and theirs.token != mine.token
        # A can neither ack, nor retry, nor renew it; B can ack it
        env = json.loads(mine.raw)
        completion = Completion(
            item=mine,
            operation_id=env["id"],
            dedup_key=None,
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            result_json='"done"',
            result_ttl=60,
        )
        assert await a.ack([completion], 0.0) == [False]
        assert await a.renew([mine.token]) == [mine.token]
        assert not await a.schedule_retry(
            mine, mine.raw, 0, operation_id=env["id"], run_ms=1, queue_priority="job:normal",
            wait_ms=1, attempts=1, last_error="{}",
        )  # fmt: skip
        theirs_done = Completion(
            item=theirs,
            operation_id=env["id"],
            dedup_key=None,
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            result_json='"done"',
            result_ttl=60,
        )
        assert await b.ack([theirs_done], 0.0) == [True]
        await client.aclose()

    asyncio.run(main())
    assert config.get_metrics()["succeeded"] == 1


async def _recovered(broker: WorkerBroker, config: QueueConfig) -> bool:
    state = await broker.maintain(config.clock.time())
    return state.requeued == 1


def test_fenced_worker_fires_no_callbacks(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    RUNS.clear()
    config = short_lease_config(make_config)
    QueueManager(config).enqueue({"n": 7, "seconds": 0.5}, long_job, on_success=job)

    async def main() -> None:
        worker = QueueWorker(config)
        await worker.start()
        await async_wait_until(lambda: ("start", 7) in RUNS)
        # Another party takes the lease over while the job runs (as recovery would)
        raw_redis.delete(config.keys.inflight, config.keys.leases)
        await async_wait_until(lambda: ("end", 7) in RUNS)
        await worker.stop()

    asyncio.run(main())
    assert 7 not in RUNS  # on_success (job) never ran
    assert config.get_metrics()["succeeded"] == 0


def test_leases_are_renewed_so_long_jobs_run_once(make_config: Callable[..., QueueConfig]) -> None:
    RUNS.clear()
    config = short_lease_config(make_config)
    QueueManager(config).enqueue({"n": 3, "seconds": 1.2}, long_job)  # 4x the lease
    run_burst(config, max_workers=2)
    assert RUNS == [("start", 3), ("end", 3)]


def test_item_that_keeps_killing_its_worker_goes_to_system_errors(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    RUNS.clear()
    config = short_lease_config(make_config, max_deliveries=3)
    op = QueueManager(config).enqueue({"n": 9}, job)

    async def crash_loop() -> None:
        client = config.make_async_client()
        for attempt in range(3):
            dead = WorkerBroker(config, client, f"dead-{attempt}")
            await async_wait_until(lambda d=dead: _claim_one(d, config), timeout=5)  # type: ignore[misc]
        await client.aclose()

    asyncio.run(crash_loop())
    run_burst(config)
    assert RUNS == []
    [stored] = raw_redis.lrange(config.keys.system_errors, 0, -1)
    record = json.loads(stored)
    assert record["reason"] == "crash_loop" and record["operation_id"] == op["operation_id"]
    assert raw_redis.hlen(config.keys.inflight) == 0


async def _claim_one(broker: WorkerBroker, config: QueueConfig) -> bool:
    await broker.maintain(config.clock.time())
    items = await broker.claim(config.keys.claim_order(["job"]), 1)
    for item in items:
        await broker.mark_started(item)  # it runs (and kills its worker): the expiry counts
    return bool(items)
