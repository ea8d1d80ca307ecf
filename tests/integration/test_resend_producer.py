"""Producer calls under lost replies: a re-sent enqueue stores nothing twice (issue 10, #6, #13).

Every fault is real: a FaultProxy between the manager and the suite's server lets the server run
the script, throws its reply away and resets the connection, so redis-py (or our guard's retry)
sends the very same call again. The script must recognise its own earlier run.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from queue_system import (
    AsyncQueueManager,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    QueueUnavailableError,
)
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from queue_system.ops.admin import QueueAdmin
from queue_system.producer.purge import PURGE_CHUNK, PURGE_FIRST_READ
from tests.support.burst import run_burst
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until
from utils import breakers

EVALSHA = b"EVALSHA"


def process_data(data: dict) -> dict:
    return data


def always_fails(data: dict) -> None:
    raise ValueError("no")


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    # Scripts are loaded beforehand, so a dropped EVALSHA is one the server really ran
    # (not a NOSCRIPT answer that makes redis-py load it and send it again anyway).
    for name in SCRIPT_NAMES:
        raw_redis.script_load(script_source(name))
    breakers.reset()
    with FaultProxy(redis_server.port) as made:
        yield made
    breakers.reset()


@pytest.fixture
def proxied(make_config: Callable[..., QueueConfig], proxy: FaultProxy) -> QueueConfig:
    return make_config(redis_url=proxy.url, connection_timeout=2.0)


def waiting(raw_redis: redis.Redis, config: QueueConfig, priority: str = "normal") -> list[dict]:
    key = config.keys.queue("process_data", priority)
    return [json.loads(raw) for raw in raw_redis.lrange(key, 0, -1)]


# --- 1. a re-sent enqueue stores nothing twice -----------------------------------------------


@pytest.mark.parametrize("dedup", [None, "user-7"], ids=["plain", "dedup-key"])
def test_resent_enqueue_stores_the_item_once(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis, dedup: str | None
) -> None:
    manager = QueueManager(proxied)
    fired = proxy.drop_reply(EVALSHA)

    result = manager.enqueue({"n": 1}, process_data, deduplication_key=dedup)

    assert fired.is_set() and proxy.requests_matching(EVALSHA) == 2  # it was re-sent
    assert result["status"] == "queued"
    assert [item["id"] for item in waiting(raw_redis, proxied)] == [result["operation_id"]]
    assert manager.get_operation(result["operation_id"])["status"] == "pending"  # type: ignore[index]


def test_resent_batch_stores_each_item_once(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    manager = QueueManager(proxied)
    entities = [{"n": 1}, {"n": 2}, {"n": 1}, {"n": 3}]  # the third duplicates the first
    proxy.drop_reply(EVALSHA)

    results = manager.enqueue_batch(entities, process_data, deduplication_key=True)

    assert proxy.requests_matching(EVALSHA) == 2
    assert [r["status"] for r in results] == ["queued", "queued", "duplicate", "queued"]
    assert results[2]["operation_id"] == results[0]["operation_id"]
    stored = [item["entity"]["n"] for item in reversed(waiting(raw_redis, proxied))]
    assert stored == [1, 2, 3]


def test_guard_retry_resends_the_same_plan(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    # Two lost replies: redis-py re-sends once, then the ConnectionError reaches our guard,
    # whose tenacity retry sends the same script call a third time.
    manager = QueueManager(proxied)
    proxy.drop_reply(EVALSHA)
    proxy.drop_reply(EVALSHA)

    result = manager.enqueue({"n": 1}, process_data, deduplication_key="once")

    assert proxy.requests_matching(EVALSHA) == 3
    assert result["status"] == "queued"
    assert [item["id"] for item in waiting(raw_redis, proxied)] == [result["operation_id"]]


def test_enqueue_whose_reply_timed_out_is_stored_once(
    make_config: Callable[..., QueueConfig], proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    # A server stall longer than connection_timeout: the script ran, its reply came too late.
    config = make_config(redis_url=proxy.url, connection_timeout=0.5)
    manager = QueueManager(config)
    proxy.hold_reply(EVALSHA, 1.0)
    try:
        result = manager.enqueue({"n": 1}, process_data, operation_id="pay-1")
    except QueueUnavailableError:
        # Whether the client re-sends after a timeout is engine/connection.py's choice; if it
        # does not, the documented way to find out is to enqueue again with the same id.
        result = manager.enqueue({"n": 1}, process_data, operation_id="pay-1")
        assert result["status"] == "duplicate" and result["existing_status"] == "pending"
    else:
        assert result["status"] == "queued"
    assert [item["id"] for item in waiting(raw_redis, config)] == ["pay-1"]


def test_async_resent_enqueue_and_batch_store_each_item_once(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        manager = AsyncQueueManager(proxied)
        try:
            proxy.drop_reply(EVALSHA)
            one = await manager.enqueue({"n": 1}, process_data, deduplication_key="a")
            proxy.drop_reply(EVALSHA)
            proxy.drop_reply(EVALSHA)  # the guard's own retry, as above
            batch = await manager.enqueue_batch([{"n": 2}, {"n": 3}], process_data)
            return one, batch
        finally:
            await manager.aclose()

    one, batch = asyncio.run(main())

    assert proxy.requests_matching(EVALSHA) == 5
    assert one["status"] == "queued"
    assert [r["status"] for r in batch] == ["queued", "queued"]
    stored = [item["entity"]["n"] for item in reversed(waiting(raw_redis, proxied))]
    assert stored == [1, 2, 3]


# --- 2. a caller-chosen operation_id is an idempotency key -----------------------------------


def test_caller_operation_id_is_an_idempotency_key(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    first = manager.enqueue({"n": 1}, process_data, operation_id="order-42")
    second = manager.enqueue({"n": 2}, process_data, operation_id="order-42")

    assert first["status"] == "queued"
    assert second == {**first, "status": "duplicate", "existing_status": "pending"}
    assert [item["entity"] for item in waiting(raw_redis, config)] == [{"n": 1}]

    run_burst(config)
    third = manager.enqueue({"n": 3}, process_data, operation_id="order-42")
    assert third["status"] == "duplicate" and third["existing_status"] == "completed"
    assert waiting(raw_redis, config) == []
    assert manager.get_operation("order-42")["result"] == {"n": 1}  # type: ignore[index]


def test_batch_operation_ids_are_idempotency_keys(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    manager.enqueue({"n": 0}, process_data, operation_id="b")

    results = manager.enqueue_batch(
        [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}], process_data, operation_ids=["a", "b", "c", "a"]
    )

    assert [r["status"] for r in results] == ["queued", "duplicate", "queued", "duplicate"]
    assert [r.get("existing_status") for r in results] == [None, "pending", None, "pending"]
    stored = [(item["id"], item["entity"]["n"]) for item in reversed(waiting(raw_redis, config))]
    assert stored == [("b", 0), ("a", 1), ("c", 3)]


def test_concurrent_enqueues_of_one_operation_id_store_it_once(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    barrier = threading.Barrier(16)
    results: list[dict[str, Any]] = []

    def producer(n: int) -> None:
        manager = QueueManager(config)
        barrier.wait()
        results.append(manager.enqueue({"n": n}, process_data, operation_id="same"))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r["status"] for r in results) == ["duplicate"] * 15 + ["queued"]
    assert len(waiting(raw_redis, config)) == 1


def test_async_caller_operation_id_is_an_idempotency_key(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    async def main() -> list[dict[str, Any]]:
        manager = AsyncQueueManager(config)
        try:
            one = await manager.enqueue({"n": 1}, process_data, operation_id="x")
            two = await manager.enqueue({"n": 2}, process_data, operation_id="x")
            batch = await manager.enqueue_batch([{"n": 3}], process_data, operation_ids=["x"])
            return [one, two, *batch]
        finally:
            await manager.aclose()

    results = asyncio.run(main())

    assert [r["status"] for r in results] == ["queued", "duplicate", "duplicate"]
    assert [item["entity"] for item in waiting(raw_redis, config)] == [{"n": 1}]


# --- 3. bookkeeping lives as long as its item ------------------------------------------------


def test_waiting_item_outlives_backup_ttl(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis, key_prefix: str
) -> None:
    # Given an item waiting longer than backup_ttl (1 s)
    config = make_config(backup_ttl=1)
    manager = QueueManager(config)
    first = manager.enqueue({"n": 1}, process_data, deduplication_key="k", operation_id="op")
    assert raw_redis.ttl(config.keys.operation("op")) == -1
    assert raw_redis.ttl(config.keys.dedup("k")) == -1
    # A key written after the item with backup_ttl expires after any TTL the item's keys got.
    marker = f"{key_prefix}marker"
    raw_redis.set(marker, 1, ex=config.backup_ttl)
    wait_until(lambda: not raw_redis.exists(marker), timeout=5)

    # Then its dedup key still blocks a duplicate and its status can still be read
    again = manager.enqueue({"n": 1}, process_data, deduplication_key="k")
    assert again["status"] == "duplicate" and again["operation_id"] == first["operation_id"]
    assert manager.get_operation("op")["status"] == "pending"  # type: ignore[index]
    assert len(waiting(raw_redis, config)) == 1


def test_requeued_item_keeps_its_record_and_dedup_key_without_ttl(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    once = QueueRetryConfig(max_attempts=0)
    manager.enqueue(
        {"n": 1},
        always_fails,
        queue_name="process_data",
        operation_id="r1",
        retry_config=once,
        deduplication_key="d",
    )
    run_burst(config)
    assert raw_redis.ttl(config.keys.operation("r1")) > 0  # terminal: it expires

    assert QueueAdmin(config).requeue(all=True)["operation_ids"] == ["r1"]

    assert raw_redis.hget(config.keys.operation("r1"), "status") == b"pending"
    assert raw_redis.ttl(config.keys.operation("r1")) == -1
    assert raw_redis.get(config.keys.dedup("d")) == b"r1"
    assert raw_redis.ttl(config.keys.dedup("d")) == -1


# --- 4. a re-sent purge chunk removes nothing it should not ----------------------------------


def test_resent_purge_chunk_removes_only_the_purged_items(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    # Given 2,500 waiting items and one higher-priority item that must stay
    manager = QueueManager(proxied)
    results = manager.enqueue_batch([{"n": n} for n in range(2500)], process_data)
    kept = manager.enqueue({"n": -1}, process_data, priority="high")
    # When the reply of the first purge chunk is lost (the chunk ran; it is sent again)
    sent = proxy.requests_matching(EVALSHA)
    proxy.drop_reply(EVALSHA)
    purged = manager.purge_queue("process_data")

    # Then every item and record is gone; only the lost reply's count is missing
    chunks = 1 + (2500 - PURGE_FIRST_READ + PURGE_CHUNK - 1) // PURGE_CHUNK
    assert proxy.requests_matching(EVALSHA) - sent == chunks + 1  # the first one sent twice
    assert purged == 2500 - PURGE_FIRST_READ
    assert waiting(raw_redis, proxied) == []
    assert not any(raw_redis.exists(proxied.keys.operation(r["operation_id"])) for r in results)
    assert [item["id"] for item in waiting(raw_redis, proxied, "high")] == [kept["operation_id"]]
