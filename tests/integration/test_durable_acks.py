"""``QueueConfig(min_replicas=N)``: enqueue and ack wait for N replicas (``WAIT``), on the suite's
single server (no replica: every wait falls short). Off by default, and then no ``WAIT`` at all.
The Sentinel group's tests (test_sentinel.py) show the waits succeeding and a failover."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import redis

from queue_system import AsyncQueueManager, QueueConfig, QueueManager, ReplicationTimeoutError
from tests.support.burst import run_burst

_done: list[int] = []


def job(data: dict[str, int]) -> None:
    _done.append(data["n"])


def wait_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def test_without_min_replicas_no_wait_is_sent(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config()
    config.register_callback(job)
    before = wait_calls(raw_redis)
    QueueManager(config).enqueue({"n": 1}, job, queue_name="work")
    run_burst(config)
    assert wait_calls(raw_redis) == before


def test_an_enqueue_no_replica_confirmed_raises_but_is_stored(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(min_replicas=1, replica_timeout=0.05)
    manager = QueueManager(config)
    before = wait_calls(raw_redis)
    with pytest.raises(ReplicationTimeoutError, match="only 0 of min_replicas=1") as raised:
        manager.enqueue({"n": 1}, job, queue_name="work", operation_id="op-1")
    assert raised.value.acknowledged == 0
    assert wait_calls(raw_redis) == before + 1
    assert raw_redis.llen(config.get_queue_key("work")) == 1
    assert config.metrics.unlabelled()["replication_timeouts"] == 1
    # Enqueueing the same operation again tells the caller it is there
    plain = QueueManager(make_config())
    assert plain.enqueue({"n": 1}, job, queue_name="work", operation_id="op-1")["status"] == (
        "duplicate"
    )


def test_an_enqueue_batch_waits_once_for_the_whole_batch(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(min_replicas=1, replica_timeout=0.05)
    before = wait_calls(raw_redis)
    with pytest.raises(ReplicationTimeoutError):
        QueueManager(config).enqueue_batch([{"n": i} for i in range(5)], job, queue_name="work")
    assert wait_calls(raw_redis) == before + 1
    assert raw_redis.llen(config.get_queue_key("work")) == 5


def test_an_ack_no_replica_confirmed_is_logged_counted_and_stays_done(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _done.clear()
    producer = QueueManager(make_config())
    operation_id = producer.enqueue({"n": 7}, job, queue_name="work")["operation_id"]
    config = make_config(min_replicas=1, replica_timeout=0.05)
    config.register_callback(job)
    before = wait_calls(raw_redis)

    with caplog.at_level(logging.WARNING, logger="queue_system"):
        run_burst(config)

    assert _done == [7]  # ran once: a short ack is not retried
    operation = producer.get_operation(operation_id)
    assert operation is not None and operation["status"] == "completed"
    assert wait_calls(raw_redis) >= before + 1
    assert config.metrics.unlabelled()["replication_timeouts"] >= 1
    assert any("ack stored on the master but only 0" in r.getMessage() for r in caplog.records)


def test_an_async_enqueue_waits_for_replicas_too(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(min_replicas=1, replica_timeout=0.05)
    before = wait_calls(raw_redis)

    async def enqueue() -> None:
        manager = AsyncQueueManager(config)
        try:
            await manager.enqueue({"n": 1}, job, queue_name="work")
        finally:
            await manager.aclose()

    with pytest.raises(ReplicationTimeoutError, match="only 0 of min_replicas=1"):
        asyncio.run(enqueue())
    assert wait_calls(raw_redis) == before + 1
    assert raw_redis.llen(config.get_queue_key("work")) == 1


def test_a_script_missing_on_the_server_is_loaded_and_sent_again(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # A promoted replica has no scripts loaded: the first durable call meets NOSCRIPT.
    config = make_config(min_replicas=1, replica_timeout=0.05)
    manager = QueueManager(config)
    raw_redis.script_flush()
    with pytest.raises(ReplicationTimeoutError):
        manager.enqueue({"n": 1}, job, queue_name="work")
    assert raw_redis.llen(config.get_queue_key("work")) == 1


def test_an_enqueue_on_a_demoted_master_raises_replication_timeout(
    make_config: Callable[..., QueueConfig], redis_url: str
) -> None:
    """A master demoted to a replica while a write was in flight (a stale master coming back
    after a failover) answers WAIT with an error; the write there is not durable: the caller
    gets ReplicationTimeoutError (enqueue again), not a raw ResponseError."""
    from queue_system.engine.embedded_server import EmbeddedRedis

    with EmbeddedRedis() as stale:
        client = redis.Redis.from_url(stale.url)
        try:
            # A writable replica runs the script, then WAIT fails as on a demoted master
            client.config_set("replica-read-only", "no")
            primary = redis.Redis.from_url(redis_url)
            port = primary.connection_pool.connection_kwargs["port"]
            primary.close()
            client.replicaof("127.0.0.1", port)
            config = make_config(redis_url=stale.url, min_replicas=1, replica_timeout=0.05)
            with pytest.raises(ReplicationTimeoutError, match="only 0 of min_replicas=1"):
                QueueManager(config).enqueue({"n": 1}, job, queue_name="work")
        finally:
            client.replicaof("NO", "ONE")
            client.close()
