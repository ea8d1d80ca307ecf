"""Worker-side bookkeeping: status records live as long as their item, terminal ones expire,
redelivery counts end with their item, and recovered items keep their order."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

from queue_system import QueueConfig, QueueManager
from queue_system.core.records import dead_letter_record
from queue_system.worker.store import ClaimedItem, Completion, WorkerBroker
from tests.support.waiting import async_wait_until

T = TypeVar("T")
RESULT_TTL_S = 600


async def job(data: dict) -> None:
    return None


def with_broker(config: QueueConfig, use: Callable[[WorkerBroker], Awaitable[T]]) -> T:
    async def main() -> T:
        client = config.make_async_client()
        try:
            return await use(WorkerBroker(config, client, "w"))
        finally:
            await client.aclose()

    return asyncio.run(main())


def lease_expired(raw_redis: redis.Redis, config: QueueConfig) -> bool:
    """True once every lease's deadline is behind the server's clock (leases use TIME)."""
    seconds, micros = raw_redis.time()
    now_ms = seconds * 1000 + micros // 1000
    return not raw_redis.zrangebyscore(config.keys.leases, now_ms, "+inf")


def op_id(item: ClaimedItem) -> str:
    return str(json.loads(item.raw)["id"])


def enqueue(config: QueueConfig, count: int = 1) -> list[str]:
    ops = QueueManager(config).enqueue_batch([{"n": n} for n in range(count)], job)
    return [op["operation_id"] for op in ops]


def status_ttl(raw_redis: redis.Redis, config: QueueConfig, operation_id: str) -> int:
    return int(raw_redis.ttl(config.keys.operation(operation_id)))


def give_record_a_ttl(raw_redis: redis.Redis, config: QueueConfig, operation_id: str) -> None:
    """As an older enqueue (or a bug) would have left it: a live record that expires."""
    assert raw_redis.expire(config.keys.operation(operation_id), 1000)


def keys_of(config: QueueConfig) -> list[str]:
    return config.keys.claim_order(["job"])


# --- live writes keep no TTL ------------------------------------------------------------------


def test_claim_keeps_the_record_of_a_running_item_without_ttl(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    [op] = enqueue(config)
    give_record_a_ttl(raw_redis, config, op)
    with_broker(config, lambda b: b.claim(keys_of(config), 1))
    assert raw_redis.hget(config.keys.operation(op), "status") == b"processing"
    assert status_ttl(raw_redis, config, op) == -1


def test_schedule_retry_keeps_the_record_without_ttl(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    [op] = enqueue(config)

    async def use(broker: WorkerBroker) -> bool:
        [item] = await broker.claim(keys_of(config), 1)
        give_record_a_ttl(raw_redis, config, op)
        return await broker.schedule_retry(
            item,
            item.raw,
            9e9,
            operation_id=op,
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            attempts=1,
            last_error="{}",
        )

    assert with_broker(config, use)
    assert raw_redis.hget(config.keys.operation(op), "status") == b"scheduled"
    assert status_ttl(raw_redis, config, op) == -1


def test_promote_due_keeps_the_record_without_ttl(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    [op] = enqueue(config)

    async def use(broker: WorkerBroker) -> int:
        [item] = await broker.claim(keys_of(config), 1)
        await broker.schedule_retry(
            item,
            item.raw,
            1.0,
            operation_id=op,
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            attempts=1,
            last_error="{}",
        )
        give_record_a_ttl(raw_redis, config, op)
        return (await broker.maintain(2.0)).promoted

    assert with_broker(config, use) == 1
    assert raw_redis.hget(config.keys.operation(op), "status") == b"pending"
    assert status_ttl(raw_redis, config, op) == -1


def test_recover_keeps_the_record_without_ttl(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2)
    [op] = enqueue(config)

    async def use(broker: WorkerBroker) -> int:
        await broker.claim(keys_of(config), 1)
        give_record_a_ttl(raw_redis, config, op)
        await async_wait_until(lambda: lease_expired(raw_redis, config), timeout=5)
        return (await broker.maintain(config.clock.time())).requeued

    assert with_broker(config, use) == 1
    assert raw_redis.hget(config.keys.operation(op), "status") == b"pending"
    assert status_ttl(raw_redis, config, op) == -1


def test_release_keeps_the_record_without_ttl(config: QueueConfig, raw_redis: redis.Redis) -> None:
    [op] = enqueue(config)

    async def use(broker: WorkerBroker) -> int:
        [item] = await broker.claim(keys_of(config), 1)
        give_record_a_ttl(raw_redis, config, op)
        return await broker.release([item.token])

    assert with_broker(config, use) == 1
    assert raw_redis.hget(config.keys.operation(op), "status") == b"pending"
    assert status_ttl(raw_redis, config, op) == -1


# --- terminal writes always set a TTL ----------------------------------------------------------


def test_ack_sets_the_result_ttl_even_on_a_record_that_was_gone(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    [op] = enqueue(config)

    async def use(broker: WorkerBroker) -> list[bool]:
        [item] = await broker.claim(keys_of(config), 1)
        raw_redis.delete(config.keys.operation(op))
        done = Completion(
            item=item,
            operation_id=op,
            dedup_key=None,
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            result_json='"ok"',
            result_ttl=RESULT_TTL_S,
        )
        return await broker.ack([done], 1.0)

    assert with_broker(config, use) == [True]
    assert 0 < status_ttl(raw_redis, config, op) <= RESULT_TTL_S


def test_dead_letter_sets_the_backup_ttl_even_on_a_record_that_was_gone(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(backup_ttl=5000)
    [op] = enqueue(config)

    async def use(broker: WorkerBroker) -> bool:
        [item] = await broker.claim(keys_of(config), 1)
        raw_redis.delete(config.keys.operation(op))
        record = dead_letter_record(
            reason="failed", error_type="E", message="x", at=1.0, envelope=json.loads(item.raw)
        )
        return await broker.dead_letter(item, record, system_error=False)

    assert with_broker(config, use)
    assert raw_redis.hget(config.keys.operation(op), "status") == b"failed"
    assert 0 < status_ttl(raw_redis, config, op) <= 5000


# --- redelivery counts ------------------------------------------------------------------------


def expire_started(config: QueueConfig, raw_redis: redis.Redis, count: int = 1) -> list[int]:
    """Lease ``count`` items to a worker that starts them and dies; recover them. Returns the
    requeued count of each round."""

    async def use(broker: WorkerBroker) -> list[int]:
        dead = WorkerBroker(config, broker.client, "dead")
        items = await dead.claim(keys_of(config), count)
        for item in items:
            await dead.mark_started(item)
        await async_wait_until(lambda: lease_expired(raw_redis, config), timeout=5)
        return [(await broker.maintain(config.clock.time())).requeued]

    return with_broker(config, use)


def test_redeliveries_are_counted_by_operation_id(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2)
    [op] = enqueue(config)
    assert expire_started(config, raw_redis) == [1]
    assert raw_redis.hgetall(config.keys.redeliveries) == {op.encode(): b"1"}


def test_redeliveries_of_an_item_without_an_id_are_counted_by_its_digest(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2)
    junk = b'{"not": "an envelope"}'
    raw_redis.lpush(config.get_queue_key("job"), junk)
    assert expire_started(config, raw_redis) == [1]
    digest = hashlib.sha1(junk).hexdigest().encode()
    assert raw_redis.hgetall(config.keys.redeliveries) == {digest: b"1"}


def test_the_redelivery_count_ends_with_its_item(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2)
    enqueue(config, 3)
    assert expire_started(config, raw_redis, 3) == [3]
    assert raw_redis.hlen(config.keys.redeliveries) == 3

    async def use(broker: WorkerBroker) -> None:
        acked, retried, dead = await broker.claim(keys_of(config), 3)
        done = Completion(
            item=acked,
            operation_id=op_id(acked),
            dedup_key=None,
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            result_json='"ok"',
            result_ttl=60,
        )
        assert await broker.ack([done], 1.0) == [True]
        assert await broker.schedule_retry(
            retried,
            retried.raw,
            9e9,
            operation_id=op_id(retried),
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            attempts=1,
            last_error="{}",
        )
        record = dead_letter_record(
            reason="failed", error_type="E", message="x", at=1.0, envelope=json.loads(dead.raw)
        )
        assert await broker.dead_letter(dead, record, system_error=False)

    with_broker(config, use)
    assert raw_redis.hlen(config.keys.redeliveries) == 0


def test_the_redeliveries_ttl_is_not_refreshed_by_each_expiry(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2)
    enqueue(config, 2)
    assert expire_started(config, raw_redis) == [1]
    raw_redis.expire(config.keys.redeliveries, 100)
    assert expire_started(config, raw_redis) == [1]
    assert 0 < raw_redis.ttl(config.keys.redeliveries) <= 100


# --- order ------------------------------------------------------------------------------------


def waiting_numbers(raw_redis: redis.Redis, config: QueueConfig) -> list[int]:
    """Entity ``n`` of each waiting item, in the order workers will take them."""
    items = reversed(raw_redis.lrange(config.get_queue_key("job"), 0, -1))
    return [json.loads(item)["entity"]["n"] for item in items]


def test_recovered_items_return_in_claim_order_at_the_head_of_their_tier(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(lease_timeout=0.2)
    enqueue(config, 25)

    async def use(broker: WorkerBroker) -> int:
        dead = WorkerBroker(config, broker.client, "dead")
        # Claimed in three calls (three lease deadlines), 20 of the 25 items
        for count in (4, 11, 5):
            await dead.claim(keys_of(config), count)
        await async_wait_until(lambda: lease_expired(raw_redis, config), timeout=5)
        return (await broker.maintain(config.clock.time())).requeued

    assert with_broker(config, use) == 20
    assert waiting_numbers(raw_redis, config) == list(range(25))
