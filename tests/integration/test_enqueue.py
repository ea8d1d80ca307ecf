"""Producer contract: once enqueue returns the item is in Redis; bad input writes nothing."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

import pytest
import redis

from queue_system import (
    AsyncQueueManager,
    ConfigurationError,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    SerializationError,
)
from tests.support.burst import run_burst


def process_data(data: dict) -> dict:
    return data


def keys_of(raw_redis: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(raw_redis.scan_iter(match=f"{prefix}*"))


def test_enqueue_stores_the_item_before_returning(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    result = manager.enqueue({"user_id": "123"}, process_data, priority="high")
    assert result["status"] == "queued"
    assert result["queue_name"] == "process_data" and result["priority"] == "high"
    stored = raw_redis.lrange(f"{key_prefix}high:process_data", 0, -1)
    assert len(stored) == 1
    envelope = json.loads(stored[0])
    assert envelope["id"] == result["operation_id"]
    assert envelope["entity"] == {"user_id": "123"}
    assert envelope["processor"] == f"{__name__}:process_data"
    assert QueueRetryConfig.from_dict(envelope["retry"]) == QueueRetryConfig()


def test_given_operation_id_queue_name_and_options_are_kept(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    retry = QueueRetryConfig.custom(delays=[5, 10], timeout=60)
    options = {"queue_name": "emails", "priority": "low", "operation_id": "op-7"}
    result = manager.enqueue(
        {"a": 1}, process_data, retry_config=retry, timeout=2.5, on_success=process_data, **options
    )
    assert result["operation_id"] == "op-7"
    envelope = json.loads(raw_redis.lindex(f"{key_prefix}low:emails", 0))  # type: ignore[arg-type]
    assert envelope["timeout"] == 2.5
    assert envelope["on_success"] == f"{__name__}:process_data"
    assert QueueRetryConfig.from_dict(envelope["retry"]) == retry


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"priority": "urgent"}, ValueError, "priority"),
        ({"entity": {"x": object()}}, SerializationError, "JSON"),
        ({"entity": {"x": "x" * 5000}}, SerializationError, "limit"),
        ({"processor": lambda d: d}, TypeError, "lambda"),
        ({"queue_name": "*"}, ValueError, "queue_name"),
        ({"queue_name": "a:b"}, ValueError, "queue_name"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": "10"}, TypeError, "timeout"),
        ({"retry_config": {"max_attempts": 3}}, TypeError, "retry_config"),
        ({"on_success": 42}, TypeError, "callable"),
        ({"operation_id": ""}, ValueError, "operation_id"),
        ({"deduplication_key": 5}, TypeError, "deduplication_key"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    key_prefix: str,
    kwargs: dict,
    error: type[Exception],
    match: str,
) -> None:
    manager = QueueManager(make_config(max_payload_bytes=4096))
    call = {"entity": {"ok": True}, "processor": process_data, **kwargs}
    with pytest.raises(error, match=match):
        manager.enqueue(**call)
    assert keys_of(raw_redis, key_prefix) == []


def test_batch_is_one_atomic_call(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    results = manager.enqueue_batch([{"id": i} for i in range(50)], process_data, priority="high")
    assert [r["status"] for r in results] == ["queued"] * 50
    assert len({r["operation_id"] for r in results}) == 50
    assert raw_redis.llen(f"{key_prefix}high:process_data") == 50
    assert manager.enqueue_batch([], process_data) == []


def test_batch_with_one_bad_entity_writes_nothing(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(SerializationError):
        manager.enqueue_batch([{"id": 1}, {"id": object()}], process_data)
    assert keys_of(raw_redis, key_prefix) == []


def test_batch_refuses_a_shared_string_dedup_key(manager: QueueManager) -> None:
    with pytest.raises(ValueError, match="deduplication_key"):
        manager.enqueue_batch([{"id": 1}], process_data, deduplication_key="same")
    with pytest.raises(TypeError, match="entities"):
        manager.enqueue_batch({"id": 1}, process_data)  # type: ignore[arg-type]


def test_duplicate_returns_first_id_and_writes_nothing(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    first = manager.enqueue({"n": 1}, process_data, deduplication_key="user-1")
    second = manager.enqueue({"n": 2}, process_data, deduplication_key="user-1")
    assert second == {**first, "status": "duplicate"}
    assert raw_redis.llen(f"{key_prefix}normal:process_data") == 1


def test_entity_hash_dedup(manager: QueueManager, raw_redis: redis.Redis, key_prefix: str) -> None:
    results = manager.enqueue_batch(
        [{"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 2}], process_data, deduplication_key=True
    )
    assert [r["status"] for r in results] == ["queued", "duplicate", "queued"]
    assert results[1]["operation_id"] == results[0]["operation_id"]
    assert raw_redis.llen(f"{key_prefix}normal:process_data") == 2


def test_dedup_race_across_threads_queues_exactly_one(
    config: QueueConfig, raw_redis: redis.Redis, key_prefix: str
) -> None:
    barrier = threading.Barrier(16)
    results: list[dict] = []

    def producer(n: int) -> None:
        manager = QueueManager(config)
        barrier.wait()
        results.append(manager.enqueue({"n": n}, process_data, deduplication_key="race"))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queued = [r for r in results if r["status"] == "queued"]
    assert len(queued) == 1
    assert {r["operation_id"] for r in results} == {queued[0]["operation_id"]}
    assert raw_redis.llen(f"{key_prefix}normal:process_data") == 1


def test_dedup_key_is_freed_once_the_item_is_done(config: QueueConfig) -> None:
    manager = QueueManager(config)
    first = manager.enqueue({"n": 1}, process_data, deduplication_key="k")
    run_burst(config)
    again = manager.enqueue({"n": 1}, process_data, deduplication_key="k")
    assert again["status"] == "queued" and again["operation_id"] != first["operation_id"]


def test_purge_queue_counts_and_frees_dedup_keys(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    manager.enqueue_batch([{"i": i} for i in range(3)], process_data, priority="low")
    manager.enqueue({"i": 9}, process_data, priority="low", deduplication_key="d")
    manager.enqueue({"i": 10}, process_data, priority="high")
    assert manager.purge_queue("process_data", priority="low") == 4
    assert raw_redis.llen(f"{key_prefix}high:process_data") == 1
    assert manager.enqueue({"i": 9}, process_data, deduplication_key="d")["status"] == "queued"
    assert manager.purge_queue("process_data", priority="low") == 0


def test_queue_status_reads_as_the_reference(manager: QueueManager, key_prefix: str) -> None:
    manager.enqueue({"a": 1}, process_data, priority="high")
    manager.enqueue({"a": 2}, process_data, queue_name="send_email")
    status = manager.get_queue_status()
    assert status[f"{key_prefix}high:process_data"] == 1
    assert status[f"{key_prefix}normal:send_email"] == 1
    assert status[f"{key_prefix}failures"] == 0
    assert status[f"{key_prefix}system_errors"] == 0
    assert status[f"{key_prefix}inflight"] == 0
    assert status[f"{key_prefix}delayed"] == 0


def test_max_queues_caps_the_registry(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis, key_prefix: str
) -> None:
    manager = QueueManager(make_config(max_queues=2))
    manager.enqueue({}, process_data, queue_name="a")
    manager.enqueue({}, process_data, queue_name="b")
    manager.enqueue({}, process_data, queue_name="a")
    with pytest.raises(ConfigurationError, match="max_queues"):
        manager.enqueue({}, process_data, queue_name="c")
    assert raw_redis.llen(f"{key_prefix}normal:c") == 0


def test_async_manager_is_the_awaited_twin(
    config: QueueConfig, raw_redis: redis.Redis, key_prefix: str
) -> None:
    async def main() -> None:
        manager = AsyncQueueManager(config)
        try:
            one = await manager.enqueue(
                {"a": 1}, process_data, priority="high", deduplication_key="x"
            )
            dup = await manager.enqueue({"a": 1}, process_data, deduplication_key="x")
            assert dup["status"] == "duplicate" and dup["operation_id"] == one["operation_id"]
            batch = await manager.enqueue_batch([{"i": 1}, {"i": 2}], process_data)
            assert len(batch) == 2
            status = await manager.get_queue_status()
            assert status[f"{key_prefix}high:process_data"] == 1
            assert status[f"{key_prefix}normal:process_data"] == 2
            assert await manager.purge_queue("process_data") == 2
        finally:
            await manager.aclose()

    asyncio.run(main())


def test_repr_and_errors_never_show_the_password(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://user:s3cret-pw@")
    config = QueueConfig(redis_url=url)
    assert "s3cret-pw" not in repr(config)
    with pytest.raises(ConfigurationError) as info:
        QueueConfig(redis_url="redis://:s3cret-pw@host:notaport/0")
    assert "s3cret-pw" not in str(info.value)
