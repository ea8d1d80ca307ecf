"""Worker scripts re-sent after a lost reply: the re-run answers like the first run.

A reply can be lost after the server ran a script (a connection reset, a stall past
``connection_timeout``). redis-py's ``Retry`` then sends the same call again, and so does the
worker's own retry. Every worker-side script must give the same state and the same answer.
Faults are real: the FaultProxy drops the reply of the script's ``EVALSHA`` on the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.core.records import dead_letter_record
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from queue_system.worker.store import ClaimedItem, Completion, WorkerBroker
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until, wait_until

T = TypeVar("T")
CALLBACKS: list[Any] = []


async def job(data: dict) -> str:
    return "done"


async def fail(data: dict) -> None:
    raise ValueError("always")


async def on_success(data: dict) -> None:
    CALLBACKS.append(("success", data["operation_id"]))


async def on_failure(data: dict) -> None:
    CALLBACKS.append(("failure", data["operation_id"]))


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLBACKS.clear()


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    # Loaded up front: a first EVALSHA answered NOSCRIPT would take the fault instead.
    for name in SCRIPT_NAMES:
        raw_redis.script_load(script_source(name))
    with FaultProxy(redis_server.port) as made:
        yield made


@pytest.fixture
def proxied(make_config: Callable[..., QueueConfig], proxy: FaultProxy) -> QueueConfig:
    """A config whose connections go through the proxy."""
    return make_config(redis_url=proxy.url)


def with_broker(config: QueueConfig, use: Callable[[WorkerBroker], Awaitable[T]]) -> T:
    async def main() -> T:
        client = config.make_async_client()
        try:
            return await use(WorkerBroker(config, client, "w"))
        finally:
            await client.aclose()

    return asyncio.run(main())


def sha(config: QueueConfig, name: str) -> bytes:
    """The bytes that name ``name``'s script in an EVALSHA request."""
    return hashlib.sha1(script_source(name).encode()).hexdigest().encode()


def numbers(items: list[ClaimedItem]) -> list[int]:
    return [json.loads(i.raw)["entity"]["n"] for i in items]


def leased_tokens(raw_redis: redis.Redis, config: QueueConfig) -> list[str]:
    return sorted(t.decode() for t in raw_redis.hkeys(config.keys.inflight))


def enqueue_six(config: QueueConfig) -> list[str]:
    QueueManager(config).enqueue_batch([{"n": n} for n in range(6)], job)
    return config.keys.claim_order(["job"])


# --- claim --------------------------------------------------------------------------------------


def test_resent_claim_returns_the_first_runs_items_and_loses_none(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    keys = enqueue_six(proxied)
    fired = proxy.drop_reply(sha(proxied, "claim"))
    # When the claim's reply is lost and redis-py re-sends it
    items = with_broker(proxied, lambda b: b.claim(keys, 3))
    assert fired.is_set() and proxy.requests_matching(sha(proxied, "claim")) == 2
    # Then the answer is the first run's: the three oldest items, and exactly those are leased
    assert numbers(items) == [0, 1, 2]
    assert leased_tokens(raw_redis, proxied) == sorted(i.token for i in items)
    assert raw_redis.llen(proxied.get_queue_key("job")) == 3


def test_worker_retry_of_a_failed_claim_resends_the_same_call(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    keys = enqueue_six(proxied)

    async def use(broker: WorkerBroker) -> list[ClaimedItem]:
        # Given a claim whose reply is lost twice (redis-py's one retry fails too)
        proxy.drop_reply(sha(proxied, "claim"))
        proxy.drop_reply(sha(proxied, "claim"))
        with pytest.raises(redis.ConnectionError):
            await broker.claim(keys, 3)
        # When the worker claims again after the error
        return await broker.claim(keys, 3)

    items = with_broker(proxied, use)
    # Then it gets the items its first call leased: none is left leased to nobody
    assert numbers(items) == [0, 1, 2]
    assert leased_tokens(raw_redis, proxied) == sorted(i.token for i in items)


def test_resent_wait_and_claim_returns_the_first_runs_items(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    keys = enqueue_six(proxied)
    raw_redis.lpush(proxied.keys.notify, "1")  # the wait ends at once: one reply for both
    proxy.drop_reply(sha(proxied, "claim"))

    async def wait_and_claim(broker: WorkerBroker) -> tuple[bool, list[ClaimedItem]]:
        try:
            return await broker.wait_and_claim(keys, 3, 0.05)
        except redis.ConnectionError:
            # redis-py before 5.1 does not re-send a pipeline after a reset: the worker's
            # fetcher then calls again, and the same call id gets the same items.
            return await broker.wait_and_claim(keys, 3, 0.05)

    _signalled, items = with_broker(proxied, wait_and_claim)
    assert proxy.requests_matching(sha(proxied, "claim")) == 2
    assert numbers(items) == [0, 1, 2]
    assert leased_tokens(raw_redis, proxied) == sorted(i.token for i in items)
    assert raw_redis.llen(proxied.get_queue_key("job")) == 3


def test_tokens_are_never_reused_across_brokers_of_one_worker_id(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # A restarted process with the same worker id (or a re-run) must not overwrite leases.
    keys = enqueue_six(config)
    first = with_broker(config, lambda b: b.claim(keys, 3))
    second = with_broker(config, lambda b: b.claim(keys, 3))
    assert not {i.token for i in first} & {i.token for i in second}
    assert raw_redis.hlen(config.keys.inflight) == 6


# --- recover (crash-loop re-lease) ------------------------------------------------------------


def test_resent_recover_returns_the_crash_looped_items_it_leased(
    make_config: Callable[..., QueueConfig], proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    config = make_config(redis_url=proxy.url, lease_timeout=0.2, max_deliveries=1)
    keys = enqueue_six(config)

    async def use(broker: WorkerBroker) -> list[tuple[ClaimedItem, int]]:
        # Given an item that started and whose lease expired (max_deliveries=1: a crash loop)
        [item] = await broker.claim(keys, 1)
        await broker.mark_started(item)
        await async_wait_until(lambda: lease_expired(raw_redis, config), timeout=5)
        # When recover's reply is lost and redis-py re-sends it
        proxy.drop_reply(sha(config, "recover"))
        state = await broker.maintain(config.clock.time())
        return state.crash_looped

    looped = with_broker(config, use)
    # Then the re-run answers with the item the first run leased to this worker
    assert [numbers([item]) for item, _ in looped] == [[0]]
    assert leased_tokens(raw_redis, config) == [looped[0][0].token]


def lease_expired(raw_redis: redis.Redis, config: QueueConfig) -> bool:
    """True once some lease's deadline is behind the server's clock (leases use TIME)."""
    seconds, micros = raw_redis.time()
    return bool(
        raw_redis.zrangebyscore(config.keys.leases, "-inf", seconds * 1000 + micros // 1000)
    )


# --- ack, schedule_retry, dead_letter ------------------------------------------------------------


def test_resent_ack_answers_done(proxied: QueueConfig, proxy: FaultProxy) -> None:
    keys = enqueue_six(proxied)

    async def use(broker: WorkerBroker) -> list[bool]:
        items = await broker.claim(keys, 2)
        done = [completion(item) for item in items]
        proxy.drop_reply(sha(proxied, "ack"))
        return await broker.ack(done, 1.0)

    assert with_broker(proxied, use) == [True, True]
    assert proxy.requests_matching(sha(proxied, "ack")) == 2
    assert proxied.get_metrics()["succeeded"] == 2  # counted once


def test_resent_schedule_retry_answers_done(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    keys = enqueue_six(proxied)

    async def use(broker: WorkerBroker) -> bool:
        [item] = await broker.claim(keys, 1)
        proxy.drop_reply(sha(proxied, "schedule_retry"))
        return await broker.schedule_retry(
            item,
            item.raw,
            9e9,
            operation_id=op_id(item),
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            attempts=1,
            last_error="{}",
        )

    assert with_broker(proxied, use) is True
    assert raw_redis.zcard(proxied.keys.delayed) == 1
    assert proxied.get_metrics()["retried"] == 1


def test_resent_dead_letter_answers_done(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    keys = enqueue_six(proxied)

    async def use(broker: WorkerBroker) -> bool:
        [item] = await broker.claim(keys, 1)
        record = dead_letter_record(
            reason="failed",
            error_type="ValueError",
            message="x",
            at=1.0,
            envelope=json.loads(item.raw),
        )
        proxy.drop_reply(sha(proxied, "dead_letter"))
        return await broker.dead_letter(item, record, system_error=False, run_ms=1)

    assert with_broker(proxied, use) is True
    assert raw_redis.llen(proxied.keys.failures) == 1


def test_resent_dead_letter_of_junk_answers_done(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    # An item with no readable operation id has no status record: its receipt is its own key.
    raw_redis.lpush(proxied.get_queue_key("job"), b"\xffnot json")

    async def use(broker: WorkerBroker) -> bool:
        [item] = await broker.claim(proxied.keys.claim_order(["job"]), 1)
        record = dead_letter_record(
            reason="undecodable",
            error_type="DecodeError",
            message="x",
            at=1.0,
            envelope=None,
            raw=item.raw,
        )
        proxy.drop_reply(sha(proxied, "dead_letter"))
        return await broker.dead_letter(item, record, system_error=True)

    assert with_broker(proxied, use) is True
    assert raw_redis.llen(proxied.keys.system_errors) == 1


def test_a_lease_taken_over_still_answers_lost(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # The receipt must not turn a real takeover into "done": B finished the item, not A.
    config = make_config(lease_timeout=0.2)
    keys = enqueue_six(config)

    async def main() -> tuple[list[bool], list[bool], bool, bool]:
        client = config.make_async_client()
        a, b = WorkerBroker(config, client, "a"), WorkerBroker(config, client, "b")
        [mine] = await a.claim(keys, 1)
        await async_wait_until(lambda: _recovered(b, config), timeout=5)
        [theirs] = await b.claim(keys, 1)
        assert theirs.raw == mine.raw
        theirs_acked = await b.ack([completion(theirs)], 1.0)
        mine_acked = await a.ack([completion(mine)], 1.0)
        retried = await a.schedule_retry(
            mine,
            mine.raw,
            9e9,
            operation_id=op_id(mine),
            run_ms=1,
            queue_priority="job:normal",
            wait_ms=1,
            attempts=1,
            last_error="{}",
        )
        record = dead_letter_record(
            reason="failed", error_type="E", message="x", at=1.0, envelope=json.loads(mine.raw)
        )
        dead = await a.dead_letter(mine, record, system_error=False)
        await client.aclose()
        return theirs_acked, mine_acked, retried, dead

    assert asyncio.run(main()) == ([True], [False], False, False)


async def _recovered(broker: WorkerBroker, config: QueueConfig) -> bool:
    state = await broker.maintain(config.clock.time())
    return state.requeued == 1


def op_id(item: ClaimedItem) -> str:
    return str(json.loads(item.raw)["id"])


def completion(item: ClaimedItem) -> Completion:
    return Completion(
        item=item,
        operation_id=op_id(item),
        dedup_key=None,
        run_ms=1,
        queue_priority="job:normal",
        wait_ms=1,
        result_json='"done"',
        result_ttl=60,
    )


# --- a worker end to end: callbacks fire exactly once ----------------------------------------


def run_until(config: QueueConfig, done: Callable[[], bool]) -> None:
    async def main() -> None:
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        try:
            await async_wait_until(done, timeout=10)
        finally:
            await worker.stop()

    asyncio.run(main())


def test_worker_fires_on_success_once_when_the_ack_reply_is_lost(
    proxied: QueueConfig, proxy: FaultProxy
) -> None:
    op = QueueManager(proxied).enqueue({"n": 1}, job, on_success=on_success)
    fired = proxy.drop_reply(sha(proxied, "ack"))
    run_until(proxied, lambda: bool(CALLBACKS))
    wait_until(fired.is_set)
    assert [("success", op["operation_id"])] == CALLBACKS
    assert proxied.get_metrics()["succeeded"] == 1


def test_worker_fires_on_failure_once_when_the_dead_letter_reply_is_lost(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    op = QueueManager(proxied).enqueue(
        {"n": 1}, fail, on_failure=on_failure, retry_config=QueueRetryConfig(max_attempts=0)
    )
    fired = proxy.drop_reply(sha(proxied, "dead_letter"))
    run_until(proxied, lambda: bool(CALLBACKS))
    assert fired.is_set()
    assert [("failure", op["operation_id"])] == CALLBACKS
    assert raw_redis.llen(proxied.keys.failures) == 1
