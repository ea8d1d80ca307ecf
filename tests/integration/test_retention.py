"""Every key the library writes has a TTL or a size cap, except those of live items."""

from __future__ import annotations

from collections.abc import Callable

import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.config import NOTIFY_CAP
from queue_system.core.types import PRIORITIES
from tests.support.burst import run_burst


def ok(data: dict) -> None:
    return None


def broken(data: dict) -> None:
    raise ValueError("always")


def test_every_key_has_a_ttl_or_a_cap(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis, key_prefix: str
) -> None:
    config = make_config(dead_letter_cap=2, unknown_processor_ttl=0)
    manager = QueueManager(config)
    manager.enqueue_batch([{"i": i} for i in range(NOTIFY_CAP + 10)], ok, deduplication_key=True)
    once = QueueRetryConfig(max_attempts=1, delays=[0], jitter=0)
    manager.enqueue_batch([{"i": i} for i in range(3)], broken, retry_config=once)
    manager.enqueue({"x": 1}, "not_registered:anything", queue_name="junk")
    kept = manager.enqueue({"keep": 1}, ok, deduplication_key="still-queued", queue_name="later")
    run_burst(config, queues=["ok", "broken", "junk"])

    keys = {k.decode() for k in raw_redis.scan_iter(match=f"{key_prefix}*")}
    k = config.keys
    live_items = {k.queue("later"), k.inflight, k.leases, k.delayed}  # hold items: never expire
    # A waiting item's status record and dedup key live as long as it does.
    live_items |= {k.operation(kept["operation_id"]), k.dedup("still-queued")}
    live_items.add(k.lease_sequence)  # one counter: lease numbers must never repeat
    # The ready index holds waiting-list keys: at most one per tier of each registered queue.
    capped = {
        k.registry: config.max_queues,
        k.ready: len(PRIORITIES) * config.max_queues,
        k.notify: NOTIFY_CAP,
        k.queue_activity: config.max_queues,
    }
    for key in sorted(keys):
        ttl = raw_redis.ttl(key)
        if key in live_items:
            continue
        if key in capped:
            sizes = {
                k.registry: raw_redis.scard,
                k.ready: raw_redis.scard,
                k.queue_activity: raw_redis.hlen,
            }
            size = sizes.get(key, raw_redis.llen)(key)
            assert size <= capped[key], key
            continue
        assert 0 < ttl <= config.backup_ttl, f"{key} has no TTL"
    assert raw_redis.llen(k.failures) == 2  # capped at dead_letter_cap
    assert raw_redis.ttl(k.dedup("still-queued")) == -1
    assert raw_redis.ttl(k.operation(kept["operation_id"])) == -1
    assert k.metrics in keys and k.failures in keys and k.system_errors in keys
