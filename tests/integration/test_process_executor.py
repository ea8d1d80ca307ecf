"""Process mode: ``QueueWorker(executor="process")`` runs sync processors in child processes.

The processors live in ``procs_app`` (a child process imports them by module and name).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from tests.integration import procs_app
from tests.support.burst import run_burst
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def process_config(make_config: Callable[..., QueueConfig]) -> QueueConfig:
    config = make_config()
    for fn in (procs_app.hang_first_time, procs_app.whoami, procs_app.refuse):
        config.register_callback(fn)
    return config


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended: its parent has not reaped it yet


def test_a_sync_processor_past_its_timeout_is_killed_and_its_item_retried(
    process_config: QueueConfig, raw_redis: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    # Given a sync processor that hangs on its first run (a thread could never stop it)
    keys = {"pids_key": f"{key_prefix}pids", "runs_key": f"{key_prefix}runs"}
    op = QueueManager(process_config).enqueue(
        {"url": redis_url, **keys},
        procs_app.hang_first_time,
        timeout=1.0,
        retry_config=QueueRetryConfig(max_attempts=1, delays=[0.1]),
    )
    # When a process-mode worker runs it
    run_burst(process_config, executor="process", max_workers=1)
    # Then the first run's process was killed at the timeout, and the retry completed
    first_pid, second_pid = (int(p) for p in raw_redis.lrange(keys["pids_key"], 0, -1))
    assert first_pid != second_pid != os.getpid()
    assert not alive(first_pid)
    info = QueueManager(process_config).get_operation(op["operation_id"])
    assert info["status"] == "completed" and info["result"] == "finished"
    assert raw_redis.hlen(process_config.keys.inflight) == 0


def test_results_and_exceptions_come_back_from_the_child(
    process_config: QueueConfig,
) -> None:
    manager = QueueManager(process_config)
    ok = manager.enqueue({"n": 1}, procs_app.whoami)
    bad = manager.enqueue({"n": 2}, procs_app.refuse, retry_config=QueueRetryConfig(0))
    worker = run_burst(process_config, executor="process", max_workers=2)
    result = manager.get_operation(ok["operation_id"])["result"]
    assert result["n"] == 1 and result["pid"] != os.getpid()
    failed = manager.get_operation(bad["operation_id"])
    assert failed["status"] == "failed"
    assert "ValueError" in str(failed["last_error"]) and "refused 2" in str(failed["last_error"])
    # The worker ended its child processes when it stopped
    assert not alive(result["pid"])
    assert worker.executor == "process"


def test_an_unknown_executor_is_refused(config: QueueConfig) -> None:
    with pytest.raises(ValueError, match="executor"):
        QueueWorker(config, executor="fork")


def test_stopping_at_once_kills_a_running_child_and_gives_the_item_back(
    process_config: QueueConfig, raw_redis: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    keys = {"pids_key": f"{key_prefix}pids", "runs_key": f"{key_prefix}runs"}
    QueueManager(process_config).enqueue(
        {"url": redis_url, **keys}, procs_app.hang_first_time, queue_name="jobs", timeout=600
    )

    async def main() -> None:
        worker = QueueWorker(process_config, max_workers=1, executor="process")
        await worker.start()
        await async_wait_until(lambda: raw_redis.llen(keys["pids_key"]) == 1, timeout=30)
        await worker.stop(grace_period=0)

    asyncio.run(main())
    [pid] = (int(p) for p in raw_redis.lrange(keys["pids_key"], 0, -1))
    assert not alive(pid)  # killed, not left running for its 600 s timeout
    assert raw_redis.llen(process_config.keys.queue("jobs")) == 1  # given back
    assert raw_redis.hlen(process_config.keys.inflight) == 0
