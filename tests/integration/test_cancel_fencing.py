"""Cancel is fenced like ack, and its scripts are safe to re-send (real server, real faults).

* a worker that lost its lease can neither end a cancelled item nor ack it; the new holder's
  ack finds the cancel mark and ends it cancelled (ack.lua answers 2);
* ``cancel.lua`` answers "moved" when the item is not where the caller found it, and a re-sent
  call (its reply lost) answers "cancelled" again;
* ``finish_cancelled.lua`` and the cancelled branch of ``ack.lua`` answer the same on a re-send.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from queue_system.worker.store import ACKED, CANCELLED, LOST, ClaimedItem, Completion, WorkerBroker
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until
from utils import breakers


async def job(data: dict) -> str:
    return "done"


def _completion(item: ClaimedItem) -> Completion:
    env = json.loads(item.raw)
    return Completion(
        item=item,
        operation_id=env["id"],
        dedup_key=None,
        run_ms=1,
        queue_priority="job:normal",
        wait_ms=1,
        result_json='"done"',
        result_ttl=60,
    )


async def _recovered(broker: WorkerBroker, config: QueueConfig) -> bool:
    return (await broker.maintain(config.clock.time())).requeued == 1


def test_a_worker_that_lost_its_lease_cannot_finish_a_cancelled_item(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config(lease_timeout=0.3)
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, job)["operation_id"]

    async def main() -> None:
        client = config.make_async_client()
        a = WorkerBroker(config, client, "worker-a")
        b = WorkerBroker(config, client, "worker-b")
        keys = config.keys.claim_order(["job"])
        # Given A runs the item and its cancel is requested
        [mine] = await a.claim(keys, 1)
        assert await asyncio.to_thread(manager.cancel, op_id) == "cancelling"
        # When A's lease expires and B takes the item over
        await async_wait_until(lambda: _recovered(b, config), timeout=5)
        [theirs] = await b.claim(keys, 1)
        # Then A can neither end it cancelled nor ack it
        assert not await a.finish_cancelled(mine, operation_id=op_id, dedup_key=None, record_ttl=60)
        assert await a.ack([_completion(mine)], 1.0) == [LOST]
        assert (await asyncio.to_thread(manager.get_operation, op_id) or {})[
            "status"
        ] == "processing"
        # And B's ack finds the mark: the item ends cancelled, not completed (re-send: same)
        assert await b.ack([_completion(theirs)], 1.0) == [CANCELLED]
        assert await b.ack([_completion(theirs)], 1.0) == [CANCELLED]
        await client.aclose()

    asyncio.run(main())
    operation = manager.get_operation(op_id)
    assert operation is not None
    assert operation["status"] == "cancelled"
    assert operation["result"] is None


def test_finish_cancelled_is_fenced_and_safe_to_resend(config: QueueConfig) -> None:
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, job, deduplication_key="d")["operation_id"]

    async def main() -> None:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "w")
        [item] = await broker.claim(config.keys.claim_order(["job"]), 1)
        dedup = json.loads(item.raw)["dedup"]
        for _ in range(2):  # the second call is a re-send whose first reply was lost
            assert await broker.finish_cancelled(
                item, operation_id=op_id, dedup_key=dedup, record_ttl=60
            )
        await client.aclose()

    asyncio.run(main())
    assert (manager.get_operation(op_id) or {})["status"] == "cancelled"
    again = manager.enqueue({"n": 1}, job, deduplication_key="d")
    assert again["status"] == "queued"  # the dedup key was freed


def test_ack_without_a_cancel_request_completes(config: QueueConfig) -> None:
    op_id = QueueManager(config).enqueue({"n": 1}, job)["operation_id"]

    async def main() -> None:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "w")
        [item] = await broker.claim(config.keys.claim_order(["job"]), 1)
        assert await broker.ack([_completion(item)], 1.0) == [ACKED]
        assert await broker.ack([_completion(item)], 1.0) == [ACKED]  # re-send
        await client.aclose()

    asyncio.run(main())
    assert (QueueManager(config).get_operation(op_id) or {})["status"] == "completed"


def test_cancel_script_answers_moved_when_the_item_is_not_where_the_caller_found_it(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    op_id = QueueManager(config).enqueue({"n": 1}, job)["operation_id"]
    cancel = raw_redis.register_script(script_source("cancel"))
    keys = config.keys
    script_keys = [
        keys.operation(op_id),
        keys.queue("job"),
        keys.delayed,
        keys.ready,
        keys.done(op_id),
        keys.metrics,
    ]

    def call(mode: str, found: bytes, nonce: str) -> bytes:
        args = [mode, found, op_id, "1.000", 60, keys.cancels, nonce, 60]
        return bytes(cancel(keys=script_keys, args=args))

    [raw] = raw_redis.lrange(keys.queue("job"), 0, -1)
    assert call("waiting", b"not the item", "n1") == b"moved"
    assert call("scheduled", raw, "n1") == b"moved"  # the record says pending
    assert call("running", b"", "n1") == b"moved"
    assert call("waiting", raw, "n2") == b"cancelled"
    assert call("waiting", raw, "n2") == b"cancelled"  # a re-send of that call
    assert call("waiting", raw, "n3") == b"already_finished"  # another call


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    for name in SCRIPT_NAMES:  # loaded: a dropped EVALSHA is one the server really ran
        raw_redis.script_load(script_source(name))
    breakers.reset()
    with FaultProxy(redis_server.port) as made:
        yield made
    breakers.reset()


def test_a_cancel_whose_reply_was_lost_is_resent_and_answers_cancelled(
    make_config: Callable[..., QueueConfig], proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    config = make_config(redis_url=proxy.url, connection_timeout=2.0)
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, job)["operation_id"]
    sha = hashlib.sha1(script_source("cancel").encode()).hexdigest().encode()
    evalsha = b"EVALSHA\r\n$40\r\n" + sha  # not the SCRIPT EXISTS a pipeline sends first
    fired = proxy.drop_reply(evalsha)

    assert manager.cancel(op_id) == "cancelled"

    # It ran and its reply was lost. redis-py >= 5.1 re-sends it on the same connection (2
    # requests); 5.0 (our floor) does not, and the guard's re-run of the plan reads this call's
    # nonce on the record instead (1 request). Either way: "cancelled", once.
    assert fired.is_set() and proxy.requests_matching(evalsha) in (1, 2)
    assert raw_redis.llen(config.keys.queue("job")) == 0


def test_a_failed_run_whose_cancel_was_requested_is_not_retried(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given a running item whose cancel was requested, but its worker missed the message
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, job, deduplication_key="k")["operation_id"]

    async def main() -> None:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "w")
        [item] = await broker.claim(config.keys.claim_order(["job"]), 1)
        assert await asyncio.to_thread(manager.cancel, op_id) == "cancelling"
        # When its run fails and the worker schedules a retry
        env = json.loads(item.raw)
        for _ in range(2):  # the second call is a re-send
            assert await broker.schedule_retry(
                item,
                item.raw,
                config.clock.time() + 60,
                operation_id=op_id,
                run_ms=1,
                queue_priority="job:normal",
                wait_ms=1,
                attempts=1,
                last_error="{}",
                dedup_key=env["dedup"],
                record_ttl=60,
            )
        await client.aclose()

    asyncio.run(main())
    # Then it is not retried: it ended cancelled, and its dedup key is free
    assert raw_redis.zcard(config.keys.delayed) == 0
    assert (manager.get_operation(op_id) or {})["status"] == "cancelled"
    assert manager.enqueue({"n": 1}, job, deduplication_key="k")["status"] == "queued"


def test_a_cancel_resent_by_the_breaker_after_two_lost_replies_answers_cancelled(
    make_config: Callable[..., QueueConfig], proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    # redis-py re-sends once; the second loss makes the guard run the whole plan again
    config = make_config(redis_url=proxy.url, connection_timeout=2.0)
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, job)["operation_id"]
    sha = hashlib.sha1(script_source("cancel").encode()).hexdigest().encode()
    evalsha = b"EVALSHA\r\n$40\r\n" + sha
    proxy.drop_reply(evalsha)
    proxy.drop_reply(evalsha)

    assert manager.cancel(op_id) == "cancelled"

    # Sent twice with redis-py >= 5.1 (the second a re-send), once with 5.0; the plan's re-run
    # then read its own nonce on the record instead of cancelling again
    assert proxy.requests_matching(evalsha) in (1, 2)
    assert raw_redis.hget(config.keys.operation(op_id), "status") == b"cancelled"
    assert raw_redis.llen(config.keys.queue("job")) == 0


def fails(data: dict) -> None:
    raise RuntimeError("always")


def recorded(data: dict) -> str:
    return "ran"


def test_a_dead_letter_drops_the_cancel_mark_so_a_requeue_runs_afresh(
    config: QueueConfig,
) -> None:
    from queue_system import QueueAdmin, QueueRetryConfig
    from queue_system.core.types import DeadLetter

    # Given a running item whose cancel was requested (the worker missed it) and that fails
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, job, retry_config=QueueRetryConfig(max_attempts=0))[
        "operation_id"
    ]

    async def main() -> None:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "w")
        [item] = await broker.claim(config.keys.claim_order(["job"]), 1)
        assert await asyncio.to_thread(manager.cancel, op_id) == "cancelling"
        env = json.loads(item.raw)
        record: DeadLetter = {
            "operation_id": op_id,
            "reason": "failed",
            "error_type": "RuntimeError",
            "message": "always",
            "at": 1.0,
            "queue": "job",
            "priority": "normal",
            "processor": env["processor"],
            "attempts": 1,
            "history": [],
            "envelope": env,
            "raw": None,
        }
        assert await broker.dead_letter(item, record, system_error=False, run_ms=1)
        await client.aclose()

    asyncio.run(main())
    assert (manager.get_operation(op_id) or {})["cancel_requested_at"] is None
    # When an operator requeues it, it runs and completes (no stale mark cancels it)
    assert QueueAdmin(config).requeue(operation_ids=[op_id])["count"] == 1
    from tests.support.burst import run_burst

    run_burst(config)
    assert (manager.get_operation(op_id) or {})["status"] == "completed"


def test_an_item_whose_worker_died_after_a_cancel_request_ends_cancelled(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    from tests.support.burst import run_burst

    # Given a worker that claimed the item, was asked to cancel it, and died
    config = make_config(lease_timeout=0.3)
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 1}, job)["operation_id"]

    async def claim_and_die() -> None:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "dead-worker")
        [item] = await broker.claim(config.keys.claim_order(["job"]), 1)
        assert item.raw
        await client.aclose()

    asyncio.run(claim_and_die())
    assert manager.cancel(op_id) == "cancelling"
    # When its lease expires and a live worker recovers it
    run_burst(config)
    # Then it ends cancelled (the mark outlives the dead worker), and nothing is left behind
    assert (manager.get_operation(op_id) or {})["status"] == "cancelled"
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert raw_redis.llen(config.keys.queue("job")) == 0
