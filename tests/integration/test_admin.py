"""QueueAdmin: health in bounded time; listing, requeueing, purging, exporting dead letters."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from queue_system import QueueAdmin, QueueConfig, QueueManager, QueueRetryConfig
from queue_system.core.records import dead_letter_record
from queue_system.engine.embedded_server import EmbeddedRedis, free_loopback_port
from queue_system.engine.scripts import script_source
from queue_system.ops import dead_letter_scan
from tests.support.burst import run_burst
from tests.support.clock import FakeClock

NO_RETRY = QueueRetryConfig(max_attempts=0)
T0 = 1_800_000_000.0


def fail_value(data: dict) -> None:
    raise ValueError(f"bad value {data['n']}")


def fail_connection(data: dict) -> None:
    raise ConnectionError(f"gateway down {data['n']}")


SUCCEEDED: list[int] = []


def succeed(data: dict) -> None:
    SUCCEEDED.append(data["n"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(make_config: Callable[..., QueueConfig], clock: FakeClock) -> QueueConfig:
    """failures: 3 ValueError in 'emails' at T0, then 2 ConnectionError in 'reports' at T0+100."""
    config = make_config(clock=clock)
    manager = QueueManager(config)
    manager.enqueue_batch([{"n": n} for n in range(3)], fail_value, queue_name="emails",
                          retry_config=NO_RETRY)  # fmt: skip
    run_burst(config)
    clock.advance(100)
    manager.enqueue_batch([{"n": n} for n in range(3, 5)], fail_connection, queue_name="reports",
                          retry_config=NO_RETRY)  # fmt: skip
    run_burst(config)
    return config


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["envelope"]["entity"]["n"] for r in records]


# --- listing ---------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters_by_queue_processor_error_and_time(
    seeded: QueueConfig,
) -> None:
    admin = QueueAdmin(seeded)
    assert sorted(ids(admin.list_dead_letters())) == [0, 1, 2, 3, 4]
    assert set(ids(admin.list_dead_letters()[:2])) == {3, 4}  # the later batch comes first
    assert sorted(ids(admin.list_dead_letters(queue="emails"))) == [0, 1, 2]
    assert sorted(ids(admin.list_dead_letters(processor="fail_connection"))) == [3, 4]
    assert sorted(ids(admin.list_dead_letters(processor=f"{__name__}:fail_value"))) == [0, 1, 2]
    assert sorted(ids(admin.list_dead_letters(error_type="ConnectionError"))) == [3, 4]
    assert sorted(ids(admin.list_dead_letters(error_type="failed"))) == [0, 1, 2, 3, 4]
    assert sorted(ids(admin.list_dead_letters(since=T0 + 50))) == [3, 4]
    assert sorted(ids(admin.list_dead_letters(until=T0 + 50))) == [0, 1, 2]
    since = dt.datetime.fromtimestamp(T0 + 50, dt.timezone.utc).replace(tzinfo=None)
    assert sorted(ids(admin.list_dead_letters(since=since))) == [3, 4]  # naive = UTC
    assert admin.list_dead_letters(queue="emails", error_type="ConnectionError") == []
    assert len(admin.list_dead_letters(limit=2)) == 2
    assert admin.list_dead_letters(system_errors=True) == []


def test_show_one_with_history_and_payload(seeded: QueueConfig) -> None:
    admin = QueueAdmin(seeded)
    op_id = admin.list_dead_letters(queue="reports", limit=1)[0]["operation_id"]
    record = admin.get_dead_letter(op_id)
    assert record is not None and record["operation_id"] == op_id
    assert record["error_type"] == "ConnectionError" and record["reason"] == "failed"
    [attempt] = record["history"]
    assert "ConnectionError: gateway down" in attempt["traceback"]
    assert record["envelope"]["entity"]["n"] in (3, 4)
    assert admin.get_dead_letter("no-such-id") is None
    assert admin.get_dead_letter(op_id, system_errors=True) is None


# --- requeue ---------------------------------------------------------------------------------


def test_requeue_resets_the_item_and_it_then_completes(
    seeded: QueueConfig, raw_redis: redis.Redis
) -> None:
    admin, manager = QueueAdmin(seeded), QueueManager(seeded)
    chosen = [r["operation_id"] for r in admin.list_dead_letters(queue="emails", limit=2)]
    result = admin.requeue(operation_ids=chosen, priority="high")
    assert result["count"] == 2 and sorted(result["operation_ids"]) == sorted(chosen)
    assert result["not_found"] == [] and result["skipped"] == []
    assert raw_redis.llen(seeded.keys.failures) == 3
    waiting = [json.loads(i) for i in raw_redis.lrange(seeded.keys.queue("emails", "high"), 0, -1)]
    assert sorted(e["id"] for e in waiting) == sorted(chosen)
    for env in waiting:
        assert env["attempts"] == 0 and env["history"] == [] and env["priority"] == "high"
        assert env["enqueued_at"] == env["first_at"] == seeded.clock.time()
        assert env["v"] == 1 and list(env)[:2] == ["v", "id"]
    assert raw_redis.llen(seeded.keys.notify) >= 1
    op = manager.get_operation(chosen[0])
    assert op is not None and op["status"] == "pending" and op["priority"] == "high"
    assert op["attempts"] == 0 and op["last_error"] is None

    # The processor is fixed (same name, now succeeding): the requeued items complete.
    SUCCEEDED.clear()
    seeded.register_callback(succeed, name=f"{__name__}:fail_value")
    run_burst(seeded)
    assert len(SUCCEEDED) == 2
    op = manager.get_operation(chosen[0])
    assert op is not None and op["status"] == "completed"


def test_requeue_all_with_filter_and_dry_run(seeded: QueueConfig, raw_redis: redis.Redis) -> None:
    admin = QueueAdmin(seeded)
    preview = admin.requeue(all=True, error_type="ConnectionError", dry_run=True)
    assert preview["count"] == 2 and preview["dry_run"] is True
    assert raw_redis.llen(seeded.keys.failures) == 5
    assert raw_redis.llen(seeded.keys.queue("reports")) == 0
    done = admin.requeue(all=True, error_type="ConnectionError")
    assert sorted(done["operation_ids"]) == sorted(preview["operation_ids"])
    assert raw_redis.llen(seeded.keys.queue("reports")) == 2
    assert sorted(ids(admin.list_dead_letters())) == [0, 1, 2]


def test_requeue_needs_ids_or_all_and_a_valid_priority(seeded: QueueConfig) -> None:
    admin = QueueAdmin(seeded)
    with pytest.raises(ValueError, match="all=True"):
        admin.requeue(queue="emails")
    with pytest.raises(ValueError, match="priority"):
        admin.requeue(all=True, priority="urgent")
    with pytest.raises(TypeError, match="list"):
        admin.requeue(operation_ids="abc")
    assert admin.requeue(operation_ids=["missing"])["not_found"] == ["missing"]


def test_requeue_of_system_errors_skips_undecodable_items(
    config: QueueConfig,
    manager: QueueManager,
    raw_redis: redis.Redis,
    make_config: Callable[..., QueueConfig],
) -> None:
    # Given one item naming an unregistered processor and one undecodable item
    op_id = manager.enqueue({"n": 7}, "later.deployed:task", queue_name="later")["operation_id"]
    raw_redis.lpush(config.keys.queue("later"), b"\xff\xfe not json")
    run_burst(make_config(unknown_processor_ttl=0))  # no wait for a deploy: system_errors
    assert raw_redis.llen(config.keys.system_errors) == 2
    # When every system error is requeued
    result = QueueAdmin(config).requeue(system_errors=True, all=True)
    # Then the decodable one is back, byte-for-byte the same entity, the other stays put
    assert result["operation_ids"] == [op_id]
    [skip] = result["skipped"]
    assert skip["operation_id"] is None and "UTF-8" in skip["reason"]
    [waiting] = raw_redis.lrange(config.keys.queue("later"), 0, -1)
    assert json.loads(waiting)["entity"] == {"n": 7}
    [left] = raw_redis.lrange(config.keys.system_errors, 0, -1)
    assert json.loads(left)["reason"] == "undecodable"


def test_requeue_takes_the_dedup_key_again(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    manager.enqueue({"n": 1}, fail_value, deduplication_key="one-per-user", retry_config=NO_RETRY)
    run_burst(config)
    assert not raw_redis.exists(config.keys.dedup("one-per-user"))
    [result_id] = QueueAdmin(config).requeue(all=True)["operation_ids"]
    assert raw_redis.get(config.keys.dedup("one-per-user")) == result_id.encode()
    again = manager.enqueue({"n": 1}, fail_value, deduplication_key="one-per-user")
    assert again["status"] == "duplicate" and again["operation_id"] == result_id


def test_requeue_script_writes_nothing_when_the_record_is_gone(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    script = raw_redis.register_script(script_source("requeue"))
    k = config.keys
    raw_redis.lpush(k.failures, b"record")
    keys = [k.failures, k.queue("q"), k.registry, k.notify, k.operation("op1"), k.ready, k.metrics]
    args = [b"record", 1, b"item", "q", "normal", "m:f", T0, 64, "op1", "failed"]
    assert script(keys=keys, args=args) == 1
    assert script(keys=keys, args=args) == 0
    assert raw_redis.lrange(k.queue("q"), 0, -1) == [b"item"]
    assert raw_redis.hget(k.operation("op1"), "status") == b"pending"
    assert raw_redis.ttl(k.operation("op1")) == -1  # live again: no TTL until it ends
    assert raw_redis.smembers(k.registry) == {b"q"}


def make_failures(config: QueueConfig, count: int, queue: str = "jobs") -> list[str]:
    """``count`` failure records as a worker writes them (fast: no processor runs)."""
    manager = QueueManager(config)
    results = manager.enqueue_batch([{"n": n} for n in range(count)], fail_value,
                                    queue_name=queue)  # fmt: skip
    client = config.redis_client
    for raw in reversed(client.lrange(config.keys.queue(queue), 0, -1)):
        env = json.loads(raw)
        record = dead_letter_record(
            reason="failed", error_type="ValueError", message="bad", at=config.clock.time(),
            envelope={**env, "attempts": 1},
        )  # fmt: skip
        client.lpush(config.keys.failures, json.dumps(record, separators=(",", ":")))
    client.delete(config.keys.queue(queue))
    return [r["operation_id"] for r in results]


def test_filtered_requeue_across_many_chunks(
    config: QueueConfig, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dead_letter_scan, "SCAN_CHUNK", 7)
    make_failures(config, 30, queue="a")
    make_failures(config, 30, queue="b")
    result = QueueAdmin(config).requeue(all=True, queue="a")
    assert result["count"] == 30
    assert raw_redis.llen(config.keys.queue("a")) == 30
    assert [r["queue"] for r in QueueAdmin(config).list_dead_letters(limit=None)] == ["b"] * 30


def test_concurrent_requeues_never_duplicate_or_lose_an_item(
    config: QueueConfig, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dead_letter_scan, "SCAN_CHUNK", 10)  # many chunks: the scans interleave
    expected = make_failures(config, 200)
    counts: list[int] = []
    barrier = threading.Barrier(4)

    def operator() -> None:
        admin = QueueAdmin(config)
        barrier.wait()
        counts.append(admin.requeue(all=True)["count"])

    threads = [threading.Thread(target=operator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(counts) == 200
    assert raw_redis.llen(config.keys.failures) == 0
    waiting = [json.loads(i)["id"] for i in raw_redis.lrange(config.keys.queue("jobs"), 0, -1)]
    assert sorted(waiting) == sorted(expected)


# --- purge, export, logging ------------------------------------------------------------------


def test_purge_removes_only_matching_records(seeded: QueueConfig, raw_redis: redis.Redis) -> None:
    admin = QueueAdmin(seeded)
    assert admin.purge(all=True, queue="reports", dry_run=True)["count"] == 2
    assert raw_redis.llen(seeded.keys.failures) == 5
    result = admin.purge(all=True, queue="reports")
    assert result["count"] == 2 and result["list"] == "failures"
    assert sorted(ids(admin.list_dead_letters())) == [0, 1, 2]
    first = admin.list_dead_letters(limit=1)[0]["operation_id"]
    assert admin.purge(operation_ids=[first])["operation_ids"] == [first]
    assert admin.purge(operation_ids=[first])["not_found"] == [first]
    assert raw_redis.llen(seeded.keys.failures) == 2


def test_purge_all_removes_unreadable_records_too(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    raw_redis.lpush(config.keys.failures, b"not a record")
    make_failures(config, 2)
    assert QueueAdmin(config).requeue(all=True, queue="jobs")["count"] == 2
    assert QueueAdmin(config).purge(all=True)["count"] == 1
    assert raw_redis.llen(config.keys.failures) == 0


def test_export_yields_json_lines(seeded: QueueConfig) -> None:
    lines = list(QueueAdmin(seeded).export(queue="emails"))
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert {json.loads(line)["queue"] for line in lines} == {"emails"}
    assert len(list(QueueAdmin(seeded).export(limit=4))) == 4


def test_each_requeue_and_purge_writes_one_structured_log_record(
    seeded: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    admin = QueueAdmin(seeded)
    with caplog.at_level(logging.INFO, logger="queue_system.admin"):
        admin.requeue(all=True, queue="emails")
        admin.purge(all=True, dry_run=True)
    records = [r for r in caplog.records if r.name == "queue_system.admin"]
    assert [(r.action, r.count, r.list, r.dry_run) for r in records] == [  # type: ignore[attr-defined]
        ("requeue", 3, "failures", False),
        ("purge", 2, "failures", True),
    ]
    for r in records:
        assert r.user and r.host  # type: ignore[attr-defined]
    assert records[0].filters == {"queue": "emails"}  # type: ignore[attr-defined]
    assert len(records[0].operation_ids) == 3  # type: ignore[attr-defined]


# --- health ----------------------------------------------------------------------------------


def test_health_counts_every_queue(
    make_config: Callable[..., QueueConfig], clock: FakeClock, raw_redis: redis.Redis
) -> None:
    config = make_config(clock=clock)
    k, manager = config.keys, QueueManager(config)
    manager.enqueue({"n": 0}, fail_value, queue_name="emails", priority="high")
    clock.advance(30)
    manager.enqueue_batch([{"n": n} for n in range(3)], fail_value, queue_name="emails")
    manager.enqueue({"n": 9}, fail_value, queue_name="reports", priority="low")
    clock.advance(12.5)
    # Given an item in flight, one scheduled for a retry, dead letters and two live workers
    raw_redis.hset(k.inflight, "w:1", k.queue("emails", "normal") + "\nitem")
    raw_redis.zadd(k.delayed, {k.queue("reports", "low") + "\nitem": 1})
    make_failures(config, 2, queue="reports")
    raw_redis.lpush(k.system_errors, json.dumps({"queue": "emails", "reason": "undecodable"}))
    now_ms = int(clock.time() * 1000)
    raw_redis.zadd(k.workers, {"w1": now_ms, "w2": now_ms - 5000, "stale": now_ms - 60_000})
    raw_redis.hset(k.worker("w1"), "running", 2)
    raw_redis.hset(k.worker("w2"), "running", 0)

    health = QueueAdmin(config).get_system_health()

    assert health["redis_connected"] is True and health["error"] is None
    assert health["redis_version"] and health["used_memory_bytes"] > 0
    assert health["workers"] == {"count": 2, "active": 1}
    assert health["queue_stats"]["emails"] == {
        "high": 1, "normal": 3, "low": 0, "queue_size": 4, "in_flight": 1,
        "scheduled_jobs": 0, "failed_jobs": 0, "system_errors": 1, "oldest_age_s": 42.5,
        "oldest_age_by_priority": {"high": 42.5, "normal": 12.5, "low": None},
        "paused": [],
    }  # fmt: skip
    reports = health["queue_stats"]["reports"]
    assert (reports["low"], reports["scheduled_jobs"], reports["failed_jobs"]) == (1, 1, 2)
    assert reports["oldest_age_s"] == 12.5
    assert health["totals"] == {"queue_size": 5, "in_flight": 1, "scheduled_jobs": 1,
                                "failed_jobs": 2, "system_errors": 1}  # fmt: skip


def test_health_of_a_down_server_is_false_and_fast(make_config: Callable[..., QueueConfig]) -> None:
    config = make_config(redis_url=f"redis://127.0.0.1:{free_loopback_port()}/0",
                         connection_timeout=1.0)  # fmt: skip
    started = time.monotonic()
    health = QueueAdmin(config).get_system_health()
    assert time.monotonic() - started < 2.0
    assert health["redis_connected"] is False and "Connection" in health["error"]
    assert health["queue_stats"] == {} and health["workers"] is None


@pytest.mark.slow
def test_health_of_a_frozen_server_answers_within_timeout_plus_one_second(
    key_prefix: str,
) -> None:
    server = EmbeddedRedis().start()  # our own: the suite's server is never frozen
    config = QueueConfig(redis_url=server.url, queue_prefix=key_prefix, connection_timeout=1.0)
    try:
        QueueManager(config).enqueue({"n": 1}, fail_value)
        assert QueueAdmin(config).get_system_health()["redis_connected"] is True
        server.freeze()
        started = time.monotonic()
        health = QueueAdmin(config).get_system_health()
        took = time.monotonic() - started
        assert health["redis_connected"] is False
        assert health["error"]
        assert took <= config.connection_timeout + 1.0, took
    finally:
        server.stop()
        config.redis_client.close()
