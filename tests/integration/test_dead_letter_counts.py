"""Per-queue dead-letter counts: kept by the scripts that write, trim, requeue and purge dead
letters, so health reads them without reading the records; recounted from the list when they
do not add up (records from before the counts, a reset)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from queue_system import QueueAdmin, QueueConfig, QueueManager, QueueRetryConfig
from queue_system.core.records import dead_letter_record
from tests.support.burst import run_burst

NO_RETRY = QueueRetryConfig(max_attempts=0)


def fail(data: dict[str, Any]) -> None:
    raise ValueError("always")


def lrange_calls(raw_redis: redis.Redis) -> int:
    stats = raw_redis.info("commandstats")
    return int(stats.get("cmdstat_lrange", {}).get("calls", 0))


def per_queue(admin: QueueAdmin) -> dict[str, int]:
    stats = admin.get_system_health()["queue_stats"]
    return {name: row["failed_jobs"] for name, row in stats.items() if row["failed_jobs"]}


def fail_items(config: QueueConfig, counts: dict[str, int]) -> None:
    manager = QueueManager(config)
    for queue, n in counts.items():
        manager.enqueue_batch([{"n": i} for i in range(n)], fail, queue_name=queue,
                              retry_config=NO_RETRY)  # fmt: skip
    run_burst(config)


def test_health_reads_counts_not_records_through_trims_requeues_and_purges(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(dead_letter_cap=10)
    fail_items(config, {"a": 4, "b": 3})
    admin = QueueAdmin(config)
    per_queue(admin)  # the first read may recount (a fresh namespace has no counts yet)
    before = lrange_calls(raw_redis)
    assert per_queue(admin) == {"a": 4, "b": 3}
    assert lrange_calls(raw_redis) == before  # no record was read

    fail_items(config, {"c": 5})  # 12 records for a cap of 10: the two oldest are trimmed
    assert raw_redis.llen(config.keys.failures) == 10
    assert per_queue(admin) == expected_from_records(raw_redis, config)
    admin.requeue(queue="c", all=True, limit=2)
    admin.purge(queue="b", all=True)
    before = lrange_calls(raw_redis)
    counts = per_queue(admin)
    assert lrange_calls(raw_redis) == before
    assert counts == expected_from_records(raw_redis, config)
    assert "b" not in counts and counts["c"] == 3


def test_records_without_counts_are_recounted_once(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # As after an upgrade: records pushed by an older version, which kept no counts.
    for queue in ("x", "x", "y"):
        record = dead_letter_record(
            reason="failed", error_type="E", message="m", at=1.0,
            envelope={"id": "op", "queue": queue, "priority": "normal"},
        )  # fmt: skip
        raw_redis.lpush(config.keys.failures, json.dumps(record))
    admin = QueueAdmin(config)
    assert per_queue(admin) == {"x": 2, "y": 1}  # read from the records, counts stored
    before = lrange_calls(raw_redis)
    assert per_queue(admin) == {"x": 2, "y": 1}
    assert lrange_calls(raw_redis) == before
    raw_redis.delete(config.keys.metrics)  # a reset of the counters: recounted again
    assert per_queue(admin) == {"x": 2, "y": 1}


def expected_from_records(raw_redis: redis.Redis, config: QueueConfig) -> dict[str, int]:
    found: dict[str, int] = {}
    for raw in raw_redis.lrange(config.keys.failures, 0, -1):
        queue = json.loads(raw)["queue"]
        found[queue] = found.get(queue, 0) + 1
    return found


def test_dependency_failures_are_counted_like_other_dead_letters(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Written by enqueue_dependent.lua (a dependency already failed) and resolve_dependents.lua
    # (a dependency failed later, and its cascade): counted, so health reads no record.
    manager = QueueManager(config)
    first = manager.enqueue({}, fail, queue_name="a", retry_config=NO_RETRY)["operation_id"]
    child = manager.enqueue({}, fail, queue_name="b", depends_on=[first])["operation_id"]
    manager.enqueue({}, fail, queue_name="c", depends_on=[child])
    run_burst(config)
    manager.enqueue({}, fail, queue_name="d", depends_on=[first])  # fails at enqueue
    admin = QueueAdmin(config)
    before = lrange_calls(raw_redis)
    assert per_queue(admin) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert lrange_calls(raw_redis) == before
