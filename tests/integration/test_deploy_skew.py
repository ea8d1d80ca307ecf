"""Unknown processors are deploy skew, not poison: the item waits for a worker that knows it.

A processor is known to a worker when its process registered it (``@config.processor``,
``register_callback``, or an enqueue of the callable) or it lies under ``allowed_modules``.
An item naming one this worker lacks goes back to the delayed set (attempts untouched) and is
looked at again after 1 s, doubling to 60 s; only ``unknown_processor_ttl`` after a worker first
saw it unknown does it go to ``system_errors``. Time is the injected FakeClock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import script_source
from queue_system.ops.reads import iso_utc
from queue_system.worker.store import WorkerBroker
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until

RAN: list[Any] = []
NO_RETRY = QueueRetryConfig(max_attempts=0)  # one failed run would end in failures at once


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    RAN.clear()
    yield


def charge(data: dict[str, Any]) -> dict[str, Any]:
    RAN.append(("charge", data["n"]))
    if data.get("fail"):
        raise RuntimeError("card declined")
    return {"charged": data["n"]}


def receipt(data: dict[str, Any]) -> None:
    RAN.append(("receipt", data["result"]))


def delayed(raw_redis: redis.Redis, config: QueueConfig) -> list[tuple[dict[str, Any], float]]:
    """The envelopes in the delayed set with their due time (s)."""
    out = []
    for member, score in raw_redis.zrange(config.keys.delayed, 0, -1, withscores=True):
        out.append((json.loads(member.partition(b"\n")[2]), score / 1000))
    return out


def dead_letters(raw_redis: redis.Redis, key: str) -> list[dict[str, Any]]:
    return [json.loads(r) for r in raw_redis.lrange(key, 0, -1)]


def run_worker(config: QueueConfig, *steps: Callable[[], object]) -> None:
    """Start a worker on ``config``; for each step, call it and wait until it returns truthy."""

    async def main() -> None:
        worker = QueueWorker(config, max_workers=2)
        await worker.start()
        try:
            for step in steps:
                await async_wait_until(step, message=getattr(step, "__doc__", "") or "step")
        finally:
            await worker.stop()

    asyncio.run(main())


def test_unknown_processor_waits_without_consuming_attempts_and_says_why(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given a producer that knows `charge` (it enqueues the callable) and a worker that does not
    clock = FakeClock()
    producer = make_config(clock=clock)
    op_id = QueueManager(producer).enqueue({"n": 1}, charge, retry_config=NO_RETRY)["operation_id"]
    worker_config = make_config(clock=clock)

    # When the worker claims it
    run_worker(worker_config, lambda: raw_redis.zcard(worker_config.keys.delayed) == 1)

    # Then it waits in the delayed set, attempts untouched, and its status says why
    [(envelope, due)] = delayed(raw_redis, worker_config)
    assert due == clock.now + 1
    assert envelope["attempts"] == 0 and envelope["history"] == []
    assert envelope["unknown_since"] == clock.now
    operation = QueueManager(worker_config).get_operation(op_id)
    assert operation is not None
    assert operation["status"] == "scheduled" and operation["attempts"] == 0
    assert operation["next_run_at"] == iso_utc(clock.now + 1)
    assert operation["last_error"]["type"] == "UnknownProcessor"
    assert f"{__name__}:charge" in operation["last_error"]["message"]
    assert dead_letters(raw_redis, worker_config.keys.system_errors) == []
    assert dead_letters(raw_redis, worker_config.keys.failures) == []
    assert raw_redis.hlen(worker_config.keys.inflight) == 0
    metrics = worker_config.get_metrics()
    assert metrics["retried"] == 0 and metrics["system_errors"] == 0 and metrics["processed"] == 0
    assert RAN == []


def test_deploy_order_a_worker_that_registers_it_later_runs_it(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given items enqueued by a process that registered `charge`, and an old worker without it
    clock = FakeClock()
    producer = make_config(clock=clock)
    ops = [
        QueueManager(producer).enqueue({"n": n}, charge, retry_config=NO_RETRY)["operation_id"]
        for n in (1, 2)
    ]
    old = make_config(clock=clock)
    run_worker(old, lambda: raw_redis.zcard(old.keys.delayed) == 2)
    assert RAN == []

    # When the new deploy's worker (which registers `charge` at import) starts after the re-check
    new = make_config(clock=clock)
    new.processor(charge)
    clock.advance(1)
    run_burst(new)

    # Then both ran once, nothing was dead-lettered, and no attempt was spent
    assert sorted(RAN) == [("charge", 1), ("charge", 2)]
    assert dead_letters(raw_redis, new.keys.system_errors) == []
    manager = QueueManager(new)
    for n, op_id in zip((1, 2), ops, strict=True):
        operation = manager.get_operation(op_id)
        assert operation is not None
        assert operation["status"] == "completed" and operation["attempts"] == 0
        assert operation["result"] == {"charged": n}


def test_a_running_worker_that_registers_the_processor_later_runs_it(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock)
    QueueManager(make_config(clock=clock)).enqueue({"n": 3}, charge)

    def registered_later() -> bool:
        config.processor(charge)  # e.g. a lazily imported plugin module
        clock.advance(1)
        return True

    run_worker(
        config,
        lambda: raw_redis.zcard(config.keys.delayed) == 1,
        registered_later,
        lambda: RAN == [("charge", 3)],
    )
    assert dead_letters(raw_redis, config.keys.system_errors) == []


def test_unknown_callback_waits_too(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given a worker that knows the processor but not the item's on_success callback
    clock = FakeClock()
    QueueManager(make_config(clock=clock)).enqueue({"n": 4}, charge, on_success=receipt)
    config = make_config(clock=clock)
    config.processor(charge)

    # When it claims the item, it does not run it (the callback could not follow)
    def then_deploy_the_callback() -> bool:
        config.processor(receipt)
        clock.advance(1)
        return True

    run_worker(
        config,
        lambda: raw_redis.zcard(config.keys.delayed) == 1,
        then_deploy_the_callback,
        lambda: ("receipt", {"charged": 4}) in RAN,
    )
    assert RAN == [("charge", 4), ("receipt", {"charged": 4})]
    assert dead_letters(raw_redis, config.keys.system_errors) == []


def test_unknown_processor_goes_to_system_errors_after_the_ttl(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock, unknown_processor_ttl=10)
    manager = QueueManager(config)
    op_id = manager.enqueue({"a": 1}, "billing:charge_card", queue_name="billing")["operation_id"]
    first_seen = clock.now

    def due_at(when: float) -> Callable[[], bool]:
        return lambda: [due for _, due in delayed(raw_redis, config)] == [when]

    def advance(seconds: float) -> Callable[[], bool]:
        def step() -> bool:
            clock.advance(seconds)
            return True

        return step

    def envelope_still_counts_from_first_sight() -> bool:
        [(envelope, _)] = delayed(raw_redis, config)
        return envelope["unknown_since"] == first_seen and envelope["attempts"] == 0

    run_worker(
        config,
        due_at(first_seen + 1),  # first sight: look again in 1 s
        advance(5),
        due_at(first_seen + 10),  # 5 s later: the wait would be 5 s, capped at the ttl
        envelope_still_counts_from_first_sight,
        lambda: raw_redis.llen(config.keys.system_errors) == 0,
        advance(5),
        lambda: raw_redis.llen(config.keys.system_errors) == 1,  # the ttl has passed
    )
    [record] = dead_letters(raw_redis, config.keys.system_errors)
    assert record["reason"] == "unknown_processor" and record["operation_id"] == op_id
    assert "billing:charge_card" in record["message"]
    assert "unknown_processor_ttl" in record["message"]
    assert record["envelope"]["entity"] == {"a": 1}
    assert raw_redis.zcard(config.keys.delayed) == 0
    operation = manager.get_operation(op_id)
    assert operation is not None and operation["status"] == "error"


def test_unknown_processor_ttl_zero_dead_letters_at_once(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(unknown_processor_ttl=0)
    QueueManager(config).enqueue({"a": 1}, "billing:charge_card", queue_name="billing")
    run_burst(config)
    [record] = dead_letters(raw_redis, config.keys.system_errors)
    assert record["reason"] == "unknown_processor"
    assert "unknown_processor_ttl" not in record["message"]  # it never waited


def test_a_retry_after_the_wait_does_not_inherit_the_wait(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given an item that waited for its processor, then ran and failed
    clock = FakeClock()
    config = make_config(clock=clock)
    retry = QueueRetryConfig(max_attempts=1, delays=[600], jitter=0)
    QueueManager(make_config(clock=clock)).enqueue(
        {"n": 5, "fail": True}, charge, retry_config=retry
    )

    def deploy() -> bool:
        config.processor(charge)
        clock.advance(1)
        return True

    def retry_scheduled() -> bool:
        return [env["attempts"] for env, _ in delayed(raw_redis, config)] == [1]

    run_worker(config, lambda: raw_redis.zcard(config.keys.delayed) == 1, deploy, retry_scheduled)

    # Then the retry is a fresh item: a later skew gets the whole ttl again
    [(envelope, _)] = delayed(raw_redis, config)
    assert "unknown_since" not in envelope
    assert RAN == [("charge", 5)]


def test_defer_is_fenced_by_the_lease(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config()
    op_id = QueueManager(config).enqueue({"n": 1}, "billing:charge_card")["operation_id"]

    async def main() -> None:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "worker-a")
        [item] = await broker.claim(config.keys.claim_order(["charge_card"]), 1)
        # Another party takes the lease over (as recovery would after an expiry)
        raw_redis.delete(config.keys.inflight, config.keys.leases)
        assert not await broker.defer(item, item.raw, 123.0, operation_id=op_id, last_error="{}")
        [again] = await broker.claim(config.keys.claim_order(["charge_card"]), 1) or [item]
        await client.aclose()
        assert again is item  # nothing was put back by the fenced call

    asyncio.run(main())
    assert raw_redis.zcard(config.keys.delayed) == 0
    assert QueueManager(config).get_operation(op_id)["status"] == "processing"  # type: ignore[index]


def test_defer_moves_a_leased_item_to_the_delayed_set(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config()
    op_id = QueueManager(config).enqueue({"n": 1}, "billing:charge_card")["operation_id"]
    raw_redis.expire(config.keys.operation(op_id), 500)

    async def main() -> None:
        client = config.make_async_client()
        broker = WorkerBroker(config, client, "worker-a")
        [item] = await broker.claim(config.keys.claim_order(["charge_card"]), 1)
        error = json.dumps({"type": "UnknownProcessor", "message": "not here"})
        assert await broker.defer(item, b"NEW", 123.5, operation_id=op_id, last_error=error)
        await client.aclose()

    asyncio.run(main())
    [(member, score)] = raw_redis.zrange(config.keys.delayed, 0, -1, withscores=True)
    assert member == config.keys.queue("charge_card").encode() + b"\nNEW" and score == 123500
    assert raw_redis.hlen(config.keys.inflight) == 0 and raw_redis.zcard(config.keys.leases) == 0
    status = {
        k.decode(): v.decode() for k, v in raw_redis.hgetall(config.keys.operation(op_id)).items()
    }
    assert status["status"] == "scheduled" and status["attempts"] == "0"
    assert status["next_run_at"] == "123.500"
    assert json.loads(status["last_error"])["type"] == "UnknownProcessor"
    assert raw_redis.ttl(config.keys.operation(op_id)) == -1  # a live item's record: no TTL
    assert raw_redis.scard(config.keys.started) == 0


def test_a_re_sent_defer_reports_its_own_work_as_done(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    # Given a worker whose defer reply is lost after the server ran it (redis-py re-sends it)
    with FaultProxy(redis_server.port) as proxy:
        config = make_config(redis_url=proxy.url)
        op_id = QueueManager(config).enqueue({"n": 1}, "billing:charge_card")["operation_id"]
        sha = raw_redis.script_load(script_source("defer"))

        async def main() -> bool:
            client = config.make_async_client()
            broker = WorkerBroker(config, client, "worker-a")
            [item] = await broker.claim(config.keys.claim_order(["charge_card"]), 1)
            fired = proxy.drop_reply(sha.encode())
            deferred = await broker.defer(item, item.raw, 5.0, operation_id=op_id, last_error="{}")
            assert fired.is_set() and proxy.requests_matching(sha.encode()) == 2
            await client.aclose()
            return deferred

        # Then the second run recognises the item it already deferred: not "lease lost"
        assert asyncio.run(main()) is True
    assert raw_redis.zcard(config.keys.delayed) == 1
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_worker_logs_which_processors_it_can_run(
    make_config: Callable[..., QueueConfig], caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(allowed_modules=["myapp.tasks", "plugins"])
    config.processor(charge)
    config.processor(receipt, name="receipt")

    async def main() -> None:
        worker = QueueWorker(config)
        with caplog.at_level(logging.INFO, logger="queue_system.worker"):
            await worker.start()
        await worker.stop()

    asyncio.run(main())
    [line] = [r.getMessage() for r in caplog.records if "can run" in r.getMessage()]
    assert f"{__name__}:charge" in line and "receipt" in line
    assert "myapp.tasks" in line and "plugins" in line
