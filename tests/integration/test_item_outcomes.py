"""Every claimed item reaches a terminal place, whatever its processor or its bytes do.

A processor that raises a CancelledError the worker did not ask for, an exception that
cannot be printed, a result too deep to encode, an item the worker cannot re-encode for
a retry: each ends in succeeded / failures / system_errors with a reason, and the worker's
executors keep running the next items (findings 3 and 4 of issue 10).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.core.records import decode_raw
from tests.support.waiting import async_wait_until

NO_RETRY = QueueRetryConfig(max_attempts=0)
RAN: list[Any] = []


async def awaits_a_cancelled_future(data: dict) -> None:
    """Awaits something another party cancelled: CancelledError the worker never requested."""
    RAN.append(("cancelled", data["n"]))
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")


def raises_unprintable(data: dict) -> None:
    RAN.append(("unprintable", data["n"]))
    raise Unprintable()


async def deep_result(data: dict) -> list[Any]:
    RAN.append(("deep", data["n"]))
    nested: list[Any] = []
    for _ in range(100_000):  # far past the JSON encoder's recursion limit
        nested = [nested]
    return nested


async def fails(data: dict) -> None:
    RAN.append(("fails", data["n"]))
    raise ValueError("the processor failed")


async def record(data: dict) -> str:
    RAN.append(("ok", data["n"]))
    return "ok"


def dead_letters(raw_redis: redis.Redis, key: str) -> list[dict[str, Any]]:
    return [json.loads(r) for r in raw_redis.lrange(key, 0, -1)]


def run_until(config: QueueConfig, done: Callable[[], object], **worker_kwargs: Any) -> None:
    """Run a worker until ``done()`` holds (bounded), then stop it."""

    async def main() -> None:
        worker = QueueWorker(config, **worker_kwargs)
        await worker.start()
        try:
            await async_wait_until(done, timeout=10)
        finally:
            await worker.stop(grace_period=1)

    asyncio.run(main())


def test_unrequested_cancelled_error_is_a_processor_failure_and_the_executor_lives_on(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    RAN.clear()
    manager = QueueManager(config)
    # Given one executor, an item whose processor raises CancelledError, then a normal item
    op = manager.enqueue({"n": 1}, awaits_a_cancelled_future, retry_config=NO_RETRY)
    manager.enqueue({"n": 2}, record)
    # When a worker runs them
    run_until(
        config,
        lambda: raw_redis.llen(config.keys.failures) == 1 and ("ok", 2) in RAN,
        max_workers=1,
        prefetch=0,
    )
    # Then the first is a processor failure (in failures, not leased for ever), the next ran
    [failure] = dead_letters(raw_redis, config.keys.failures)
    assert failure["operation_id"] == op["operation_id"]
    assert failure["reason"] == "failed"
    assert "CancelledError" in failure["error_type"] + failure["message"]
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_exception_whose_str_raises_is_recorded_with_its_repr(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    RAN.clear()
    op = QueueManager(config).enqueue({"n": 3}, raises_unprintable, retry_config=NO_RETRY)
    run_until(config, lambda: raw_redis.llen(config.keys.failures) == 1, max_workers=1)
    [failure] = dead_letters(raw_redis, config.keys.failures)
    assert failure["operation_id"] == op["operation_id"]
    assert failure["error_type"] == "Unprintable"
    assert "Unprintable" in failure["message"]
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_result_too_deep_to_encode_still_completes_the_item(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    RAN.clear()
    manager = QueueManager(config)
    op = manager.enqueue({"n": 4}, deep_result)
    run_until(config, lambda: config.get_metrics()["succeeded"] == 1, max_workers=1)
    stored = manager.get_operation(op["operation_id"])
    assert stored is not None and stored["status"] == "completed"
    assert stored["result"]["unserializable"] == "list"
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_item_that_cannot_be_re_encoded_for_a_retry_goes_to_system_errors_with_its_bytes(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    RAN.clear()
    config.register_callback(fails)
    # Given an item another producer wrote with a NaN (Python's json reads it; we never write it)
    raw = json.dumps(
        {
            "v": 1,
            "id": "op-nan",
            "queue": "jobs",
            "priority": "normal",
            "processor": f"{__name__}:fails",
            "entity": {"n": 5, "x": float("nan")},
            "retry": {"max_attempts": 3, "delays": [0.01], "timeout": None, "jitter": 0},
            "attempts": 0,
            "first_at": 1.0,
            "enqueued_at": 1.0,
            "history": [],
        }
    ).encode()
    raw_redis.sadd(config.keys.registry, "jobs")
    raw_redis.lpush(config.keys.queue("jobs"), raw)
    # When its processor fails, the retry cannot be encoded (allow_nan=False)
    run_until(config, lambda: raw_redis.llen(config.keys.system_errors) == 1, max_workers=1)
    # Then it lands in system_errors with its raw bytes and a reason, not stranded in flight
    [record_] = dead_letters(raw_redis, config.keys.system_errors)
    assert record_["operation_id"] == "op-nan"
    assert record_["reason"] == "runner_error"
    assert decode_raw(record_["raw"]) == raw
    assert record_["message"]
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert RAN == [("fails", 5)]
