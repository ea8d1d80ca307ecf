"""Callbacks as the reference says: retried with backoff while they raise, still exactly once
after a successful ack; one that keeps failing is logged, counted, and blocks nothing."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.worker.callbacks import CALLBACK_RETRIES
from queue_system.worker.upkeep_loops import HEARTBEAT_INTERVAL_S
from tests.support.burst import run_burst

CALLS: dict[str, int] = {}
RUNS: dict[str, int] = {}


def work(entity: dict[str, Any]) -> dict[str, Any]:
    RUNS[entity["key"]] = RUNS.get(entity["key"], 0) + 1
    if entity.get("fail"):
        raise ValueError("processor failed")
    return {"done": entity["key"]}


def fails_twice(data: dict[str, Any]) -> None:
    key = data["entity"]["key"]
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] <= 2:
        raise ConnectionError(f"callback attempt {CALLS[key]} failed")


async def always_fails(data: dict[str, Any]) -> None:
    key = data["entity"]["key"]
    CALLS[key] = CALLS.get(key, 0) + 1
    raise ConnectionError("the webhook is down")


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    RUNS.clear()


def callback_errors(config: QueueConfig) -> float:
    return sum(v for k, v in config.metrics.snapshot().items() if k.startswith("callback_errors"))


def test_a_callback_that_fails_twice_then_succeeds_runs_three_times_acked_once(
    config: QueueConfig, manager: QueueManager
) -> None:
    op = manager.enqueue({"key": "a"}, work, on_success=fails_twice)["operation_id"]
    run_burst(config)
    assert CALLS == {"a": 3} and RUNS == {"a": 1}
    metrics = config.get_metrics()
    assert metrics["succeeded"] == 1 and metrics["processed"] == 1
    assert manager.get_operation(op)["status"] == "completed"  # type: ignore[index]
    assert callback_errors(config) == 0
    # Once acked, no later worker runs the item or its callback again.
    run_burst(config)
    assert CALLS == {"a": 3} and RUNS == {"a": 1}


def test_on_failure_is_retried_too(config: QueueConfig, manager: QueueManager) -> None:
    never = QueueRetryConfig(max_attempts=0)
    manager.enqueue({"key": "f", "fail": True}, work, retry_config=never, on_failure=fails_twice)
    run_burst(config)
    assert CALLS == {"f": 3} and RUNS == {"f": 1}


def test_a_callback_that_always_fails_is_counted_and_the_worker_keeps_going(
    config: QueueConfig, manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    ops = [
        manager.enqueue({"key": f"k{i}"}, work, on_success=always_fails)["operation_id"]
        for i in range(3)
    ]
    plain = [manager.enqueue({"key": f"p{i}"}, work)["operation_id"] for i in range(5)]
    with caplog.at_level(logging.WARNING):
        run_burst(config, max_workers=1)
    assert {f"k{i}": CALLBACK_RETRIES + 1 for i in range(3)} == CALLS
    assert all(
        manager.get_operation(op)["status"] == "completed"  # type: ignore[index]
        for op in ops + plain
    )
    assert callback_errors(config) == 3
    given_up = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert sorted(getattr(r, "operation_id", None) for r in given_up) == sorted(ops)


def test_a_worker_stops_promptly_after_callback_retries(
    config: QueueConfig, manager: QueueManager
) -> None:
    # A stop landing while the heartbeat waited on the closing event used to be swallowed
    # (asyncio.wait_for finishing with the event and the cancel at once), and the heartbeat
    # then slept its whole 5 s interval: every burst whose callbacks retried took 5 s more.
    manager.enqueue({"key": "s"}, work, on_success=fails_twice)
    started = time.monotonic()
    run_burst(config)
    assert CALLS == {"s": 3}
    assert time.monotonic() - started < HEARTBEAT_INTERVAL_S - 1
