"""Delayed enqueue (delay=, run_at=) and expiry (expires=), against the real server.

Scheduled items wait in the ``scheduled`` ZSET scored by the server's clock; promote_due.lua
moves them by Redis TIME, so a worker whose clock runs ahead cannot promote early. Expiry is
checked by the worker before a processor starts, on the injected clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from queue_system import AsyncQueueManager, QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from queue_system.worker.store import WorkerBroker
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.proxy import FaultProxy
from tests.support.readme import run_readme_block
from tests.support.waiting import async_wait_until, wait_until

ROOT = Path(__file__).resolve().parents[2]
RAN: list[Any] = []
FAILED: list[dict[str, Any]] = []


def record(entity: dict[str, Any]) -> None:
    RAN.append(entity["n"])


def on_failure(data: dict[str, Any]) -> None:
    FAILED.append(data)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    RAN.clear()
    FAILED.clear()
    yield


def server_ms(raw_redis: redis.Redis) -> float:
    seconds, micros = raw_redis.time()
    return seconds * 1000 + micros / 1000


def scheduled(raw_redis: redis.Redis, config: QueueConfig) -> list[tuple[bytes, float]]:
    return raw_redis.zrange(config.keys.scheduled, 0, -1, withscores=True)  # type: ignore[return-value]


def maintain(config: QueueConfig, now_s: float) -> Any:
    """One promote + recover pass, as a worker's maintainer runs it."""

    async def main() -> Any:
        client = config.make_async_client()
        try:
            return await WorkerBroker(config, client, "w-test").maintain(now_s)
        finally:
            await client.aclose()

    return asyncio.run(main())


# --- delay= and run_at= ----------------------------------------------------------------------


def test_delay_is_counted_from_the_server_time_and_the_item_waits_scheduled(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    # When an item is enqueued with a 60 s delay
    before = server_ms(raw_redis)
    op = manager.enqueue({"n": 1}, record, delay=dt.timedelta(seconds=60))
    after = server_ms(raw_redis)

    # Then it is in the scheduled set, due 60 s after the server's time, not on its list
    [(member, due)] = scheduled(raw_redis, config)
    assert member.startswith(config.get_queue_key("record").encode() + b"\n")
    assert before + 60_000 <= due <= after + 60_000
    assert raw_redis.llen(config.get_queue_key("record")) == 0
    assert op["status"] == "queued"
    info = manager.get_operation(op["operation_id"])
    assert info is not None and info["status"] == "scheduled"
    assert info["next_run_at"] == dt.datetime.fromtimestamp(
        round(due / 1000, 3), dt.timezone.utc
    ).isoformat(timespec="milliseconds")
    # And the counts say so without a scan
    assert manager.get_queue_status()[config.keys.scheduled] == 1
    assert raw_redis.hgetall(config.keys.scheduled_counts) == {
        config.get_queue_key("record").encode(): b"1"
    }
    health = manager.get_system_health()
    assert health["queue_stats"]["record"]["scheduled_jobs"] == 1
    assert health["totals"]["scheduled_jobs"] == 1


def test_run_at_is_absolute_and_batches_keep_their_order(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    run_at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    manager.enqueue_batch([{"n": i} for i in range(5)], record, run_at=run_at)
    members = scheduled(raw_redis, config)
    assert [m.split(b"\n", 1)[1].count(b'"n":%d' % i) for i, (m, _) in enumerate(members)] == [
        1
    ] * 5
    # Due at run_at, one microsecond apart in item order (so promotion keeps the order)
    assert [round(due - run_at.timestamp() * 1000, 3) for _, due in members] == [
        0.0,
        0.001,
        0.002,
        0.003,
        0.004,
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 5, "run_at": dt.datetime.now(dt.timezone.utc)}, "not both"),
        ({"delay": -1}, ">= 0"),
        ({"delay": float("nan")}, "finite"),
        ({"run_at": dt.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"expires": dt.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"expires": 0}, "> 0"),
        ({"delay": 60, "expires": 30}, "after the item is due"),
    ],
)
def test_bad_schedules_raise_before_anything_is_written(
    config: QueueConfig,
    manager: QueueManager,
    raw_redis: redis.Redis,
    options: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        manager.enqueue({"n": 1}, record, **options)
    with pytest.raises(ValueError, match=message):
        manager.enqueue_batch([{"n": 1}], record, **options)
    assert raw_redis.keys(f"{config.keys.prefix}*") == []


def test_a_zero_delay_is_an_ordinary_enqueue(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    op = manager.enqueue({"n": 1}, record, delay=0)
    assert raw_redis.llen(config.get_queue_key("record")) == 1
    assert raw_redis.zcard(config.keys.scheduled) == 0
    info = manager.get_operation(op["operation_id"])
    assert info is not None and info["status"] == "pending"


def test_delay_must_be_seconds_or_timedelta(manager: QueueManager) -> None:
    with pytest.raises(TypeError, match="delay must be seconds"):
        manager.enqueue({"n": 1}, record, delay="5")  # type: ignore[arg-type]


def test_due_items_run_in_due_order_fifo_within_a_batch(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given items due at different times, enqueued out of due order, and a batch due together
    config = make_config()
    manager = QueueManager(config)
    now = dt.datetime.fromtimestamp(server_ms(raw_redis) / 1000, dt.timezone.utc)
    manager.enqueue({"n": "late"}, record, run_at=now + dt.timedelta(seconds=0.6))
    manager.enqueue_batch([{"n": i} for i in range(5)], record, run_at=now + dt.timedelta(0, 0.4))
    manager.enqueue({"n": "early"}, record, delay=0.2)
    manager.enqueue({"n": "past"}, record, run_at=now - dt.timedelta(seconds=5))

    # When one worker drains them (it waits for scheduled items)
    run_burst(config, max_workers=1)

    # Then they ran in due order, and the batch in its own order
    assert RAN == ["past", "early", 0, 1, 2, 3, 4, "late"]
    assert raw_redis.zcard(config.keys.scheduled) == 0
    assert raw_redis.hlen(config.keys.scheduled_counts) == 0


def test_a_worker_whose_clock_runs_ahead_does_not_promote_early(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given a worker clock weeks ahead of the server (FakeClock starts in 2027)
    clock = FakeClock(start=server_ms(raw_redis) / 1000 + 3600)
    config = make_config(clock=clock)
    op = QueueManager(config).enqueue({"n": 1}, record, delay=0.5)

    # When it runs a maintenance pass at once, nothing is promoted: not due by server time
    state = maintain(config, clock.time())
    assert state.promoted == 0 and state.delayed == 1
    # And the next due time is reported on the worker's clock (about 0.5 s from its now)
    assert state.next_due_ms is not None
    assert 0 < state.next_due_ms - clock.time() * 1000 <= 500
    assert raw_redis.zcard(config.keys.scheduled) == 1

    # Then once the server's clock reaches the due time, a pass promotes it
    wait_until(lambda: maintain(config, clock.time()).promoted == 1, timeout=5)
    assert raw_redis.llen(config.get_queue_key("record")) == 1
    info = QueueManager(config).get_operation(op["operation_id"])
    assert info is not None and info["status"] == "pending"
    assert raw_redis.ttl(config.keys.operation(op["operation_id"])) == -1
    assert raw_redis.hlen(config.keys.scheduled_counts) == 0


def test_retries_keep_the_worker_clock(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # A retry's due time is the worker's now + backoff (the delayed set), promoted by that
    # clock: a scheduled item beside it is not promoted by the same (far ahead) clock.
    clock = FakeClock()
    config = make_config(clock=clock)
    QueueManager(config).enqueue({"n": 1}, record, delay=30)
    raw_redis.zadd(
        config.keys.delayed, {config.get_queue_key("record") + "\nretry": clock.now * 1000}
    )
    state = maintain(config, clock.time())
    assert state.promoted == 1
    assert raw_redis.lrange(config.get_queue_key("record"), 0, -1) == [b"retry"]
    assert raw_redis.zcard(config.keys.scheduled) == 1


def test_dedup_key_is_held_while_scheduled(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    first = manager.enqueue({"n": 1}, record, delay=0.3, deduplication_key="once")
    again = manager.enqueue({"n": 2}, record, deduplication_key="once")
    assert again["status"] == "duplicate"
    assert again["operation_id"] == first["operation_id"]
    run_burst(config)
    assert RAN == [1]
    # Released when it finished
    assert manager.enqueue({"n": 3}, record, deduplication_key="once")["status"] == "queued"


def test_the_async_manager_schedules_alike(config: QueueConfig, raw_redis: redis.Redis) -> None:
    async def main() -> None:
        manager = AsyncQueueManager(config)
        try:
            op = await manager.enqueue({"n": 1}, record, delay=60, expires=120)
            await manager.enqueue_batch([{"n": 2}], record, run_at=dt.datetime.now(dt.timezone.utc))
            info = await manager.get_operation(op["operation_id"])
            assert info is not None and info["status"] == "scheduled"
        finally:
            await manager.aclose()

    asyncio.run(main())
    assert raw_redis.zcard(config.keys.scheduled) == 2


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    # Loaded up front: a first EVALSHA answered NOSCRIPT would take the fault instead.
    for name in SCRIPT_NAMES:
        raw_redis.script_load(script_source(name))
    with FaultProxy(redis_server.port) as made:
        yield made


def sha(name: str) -> bytes:
    """The bytes that name ``name``'s script in an EVALSHA request."""
    return hashlib.sha1(script_source(name).encode()).hexdigest().encode()


def test_a_resent_scheduled_enqueue_stores_once(
    proxy: FaultProxy, make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given a proxy that loses the reply of the enqueue (after the server ran it)
    config = make_config(redis_url=proxy.url)
    fired = proxy.drop_reply(sha("enqueue"))
    QueueManager(config).enqueue({"n": 1}, record, delay=60)
    assert fired.is_set() and proxy.requests_matching(sha("enqueue")) == 2
    # Then the re-sent call found its own record: one item, one count
    assert raw_redis.zcard(config.keys.scheduled) == 1
    assert raw_redis.hgetall(config.keys.scheduled_counts) == {
        config.get_queue_key("record").encode(): b"1"
    }


def test_a_resent_promotion_pushes_each_item_once(
    proxy: FaultProxy, make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given two items already due
    config = make_config(redis_url=proxy.url)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    QueueManager(config).enqueue_batch([{"n": 1}, {"n": 2}], record, run_at=past)
    # When promote_due's reply is lost and redis-py re-sends it
    fired = proxy.drop_reply(sha("promote_due"))
    maintain(config, config.clock.time())
    assert fired.is_set() and proxy.requests_matching(sha("promote_due")) == 2
    # Then each item is on its list once, and the counts are back to nothing
    assert raw_redis.llen(config.get_queue_key("record")) == 2
    assert raw_redis.zcard(config.keys.scheduled) == 0
    assert raw_redis.hlen(config.keys.scheduled_counts) == 0


# --- delivery contract -----------------------------------------------------------------------

WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from queue_system import QueueConfig, QueueWorker
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2])
    asyncio.run(QueueWorker(config, max_workers=1).run())
    """
)


@pytest.mark.slow
def test_a_scheduled_item_survives_a_worker_sigkill(
    redis_url: str, key_prefix: str, config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given a live worker process and an item scheduled 2 s ahead
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER_CHILD, redis_url, key_prefix],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_until(lambda: raw_redis.zcard(config.keys.workers) == 1, timeout=20)
        op = QueueManager(config).enqueue({"n": 1}, record, delay=2)
        # When the worker is killed before it is due
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # Then the item is still in Redis, scheduled, and a new worker runs it once when due
    assert raw_redis.zcard(config.keys.scheduled) == 1
    info = QueueManager(config).get_operation(op["operation_id"])
    assert info is not None and info["status"] == "scheduled"
    run_burst(config)
    assert RAN == [1]
    info = QueueManager(config).get_operation(op["operation_id"])
    assert info is not None and info["status"] == "completed"


# --- expires= --------------------------------------------------------------------------------


def test_expiry_boundary_just_before_runs(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock)
    op = QueueManager(config).enqueue({"n": 1}, record, expires=10, on_failure=on_failure)
    clock.advance(9.999)
    run_burst(config)
    assert RAN == [1] and FAILED == []
    info = QueueManager(config).get_operation(op["operation_id"])
    assert info is not None and info["status"] == "completed" and info["expired_at"] is None


def test_expiry_boundary_at_the_deadline_never_runs_and_calls_on_failure(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given an item that expires 10 s after its enqueue (producer and worker share the clock)
    clock = FakeClock()
    config = make_config(clock=clock)
    op = QueueManager(config).enqueue(
        {"n": 1},
        record,
        expires=dt.timedelta(seconds=10),
        on_failure=on_failure,
        deduplication_key="exp",
    )

    # When a worker claims it exactly at its deadline
    clock.advance(10)
    run_burst(config)

    # Then it never ran, ended "expired" (counted, dedup key freed), and on_failure ran
    assert RAN == []
    info = QueueManager(config).get_operation(op["operation_id"])
    assert info is not None and info["status"] == "expired"
    assert info["expired_at"] == dt.datetime.fromtimestamp(
        1_800_000_010, dt.timezone.utc
    ).isoformat(timespec="milliseconds")
    assert 0 < raw_redis.ttl(config.keys.operation(op["operation_id"])) <= config.backup_ttl
    assert config.get_metrics()["expired"] == 1
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert raw_redis.exists(config.keys.dedup("exp")) == 0
    [data] = FAILED
    assert data["reason"] == "expired" and data["operation_id"] == op["operation_id"]
    assert data["error_type"] == "Expired" and data["entity"] == {"n": 1}


def test_expires_as_an_aware_datetime(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock)
    deadline = dt.datetime.fromtimestamp(clock.now + 5, dt.timezone.utc)
    op = QueueManager(config).enqueue({"n": 1}, record, expires=deadline)
    clock.advance(6)
    run_burst(config)
    info = QueueManager(config).get_operation(op["operation_id"])
    assert RAN == [] and info is not None and info["status"] == "expired"


def test_expire_script_is_fenced_and_safe_to_resend(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config()
    op = QueueManager(config).enqueue({"n": 1}, record, expires=60)

    async def main() -> list[bool]:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "w1")
        try:
            [item] = await broker.claim([config.get_queue_key("record")], 1)
            args = {"operation_id": op["operation_id"], "dedup_key": None}
            first = await broker.expire(item, **args, expired_at_s=1.0, finished_s=2.0)
            resent = await broker.expire(item, **args, expired_at_s=1.0, finished_s=2.0)
            other = WorkerBroker(config, client, "w2")
            stolen = type(item)(token="w2:999", list_key=item.list_key, raw=item.raw)
            lost = await other.expire(stolen, **args, expired_at_s=1.0, finished_s=2.0)
            return [first, resent, lost]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [True, True, False]
    assert config.get_metrics()["expired"] == 1


def test_a_retry_of_an_item_that_ran_is_not_expired(
    make_config: Callable[..., QueueConfig],
) -> None:
    from queue_system.worker.expiry import expired_at

    assert expired_at({"expires_at": 10.0, "attempts": 0}, 10.0) == 10.0
    assert expired_at({"expires_at": 10.0, "attempts": 0}, 9.999) is None
    assert expired_at({"expires_at": 10.0, "attempts": 1}, 11.0) is None
    assert expired_at({"attempts": 0}, 11.0) is None


def test_a_worker_run_in_process_expires_with_async_manager(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock)

    async def main() -> None:
        manager = AsyncQueueManager(config)
        worker = QueueWorker(config)
        try:
            op = await manager.enqueue({"n": 1}, record, expires=1, on_failure=on_failure)
            clock.advance(2)
            await worker.start()
            await async_wait_until(lambda: len(FAILED) == 1)
            info = await manager.get_operation(op["operation_id"])
            assert info is not None and info["status"] == "expired"
        finally:
            await worker.stop()
            await manager.aclose()

    asyncio.run(main())
    assert RAN == []


# --- queue names -----------------------------------------------------------------------------


def test_forget_refuses_a_queue_with_a_scheduled_item(
    config: QueueConfig, manager: QueueManager
) -> None:
    from queue_system import QueueAdmin

    manager.enqueue({"n": 1}, record, queue_name="later", delay=3600)
    with pytest.raises(ValueError, match="1 scheduled"):
        QueueAdmin(config).forget_queue("later")


def test_an_idle_queue_with_a_scheduled_item_is_not_retired(
    make_config: Callable[..., QueueConfig],
) -> None:
    # Retiring it would leave its item, once promoted, on a list no registry names
    from queue_system import QueueAdmin

    clock = FakeClock()
    config = make_config(clock=clock, backup_ttl=3600)
    QueueManager(config).enqueue({"n": 1}, record, queue_name="later", delay=10 * 3600)
    admin = QueueAdmin(config)
    assert admin.retire_idle_queues() == []
    clock.advance(2 * 3600)
    assert admin.retire_idle_queues() == []


# --- README ----------------------------------------------------------------------------------


def test_readme_delayed_jobs(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Delayed jobs", examples_url, tmp_path)
    assert stdout.splitlines() == [
        "reminder for bob after 1 s",
        "reminder for ada after 2 s",
        "scheduled True",
        "duplicate",
        "['send_reminder']",
    ]


def test_readme_expiry(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Expiry", examples_url, tmp_path)
    lines = stdout.splitlines()
    assert sorted(lines[:2]) == ["charged order 1", "order 2 not run: expired"]
    assert lines[2:] == ["expired", "1"]
