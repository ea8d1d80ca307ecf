"""Burst mode (``QueueWorker(burst=True)``, ``queue-system worker --burst``) for cron jobs.

It returns once nothing is ready: nothing waiting and nothing in flight. Retries scheduled
for later do not keep it alive unless ``wait_scheduled=True`` (``--wait-scheduled``). While
Redis is unreachable it gives up after ``outage_limit`` seconds with QueueUnavailableError
(the CLI exits 1 with one line) instead of waiting for ever (finding 14 of issue 10).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.errors import QueueUnavailableError

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS: dict[str, int] = {}


def fails_once(data: dict) -> str:
    key = data["key"]
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] == 1:
        raise RuntimeError("first run fails")
    return "ok"


def burst(config: QueueConfig, **kwargs: object) -> float:
    """Run a burst worker to its end; how long it took (bounded)."""
    started = time.monotonic()

    async def main() -> None:
        await asyncio.wait_for(QueueWorker(config, burst=True, **kwargs).run(), timeout=30)  # type: ignore[arg-type]

    asyncio.run(main())
    return time.monotonic() - started


def test_burst_returns_while_a_retry_is_only_scheduled_for_later(
    config: QueueConfig, raw_redis: redis.Redis
) -> None:
    ATTEMPTS.clear()
    # Given an item whose retry is due in two hours
    retry = QueueRetryConfig(max_attempts=2, delays=[7200], jitter=0)
    QueueManager(config).enqueue({"key": "a"}, fails_once, retry_config=retry)
    # When a burst worker runs, it returns once the first run failed: nothing else is ready
    took = burst(config)
    assert took < 10
    assert ATTEMPTS == {"a": 1}
    assert raw_redis.zcard(config.keys.delayed) == 1  # the retry is kept for a later run


def test_burst_with_wait_scheduled_waits_for_due_retries(config: QueueConfig) -> None:
    ATTEMPTS.clear()
    retry = QueueRetryConfig(max_attempts=2, delays=[0.3], jitter=0)
    QueueManager(config).enqueue({"key": "b"}, fails_once, retry_config=retry)
    burst(config, wait_scheduled=True)
    assert ATTEMPTS == {"b": 2}
    assert config.get_metrics()["succeeded"] == 1


def test_burst_gives_up_while_redis_is_unreachable(
    make_config: Callable[..., QueueConfig],
) -> None:
    dead = EmbeddedRedis()  # a free port nothing listens on
    config = make_config(redis_url=dead.url, connection_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError, match="unreachable for"):
        burst(config, outage_limit=1.0)
    assert time.monotonic() - started < 10


def test_cli_burst_exits_1_with_one_line_when_redis_is_unreachable(key_prefix: str) -> None:
    dead = EmbeddedRedis()
    env = {
        **os.environ,
        "CLI_APP_REDIS_URL": dead.url,
        "CLI_APP_PREFIX": key_prefix,
        "PYTHONPATH": str(ROOT),
    }
    argv = [
        sys.executable,
        "-m",
        "queue_system",
        "--url",
        dead.url,
        "--prefix",
        key_prefix,
        "--timeout",
        "0.2",
        "worker",
        "tests.integration.cli_app:config",
        "--burst",
        "--outage-limit",
        "1",
    ]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "unreachable" in last, out.stderr[-2000:]


def test_cli_wait_scheduled_flag(key_prefix: str, redis_url: str) -> None:
    env = {
        **os.environ,
        "CLI_APP_REDIS_URL": redis_url,
        "CLI_APP_PREFIX": key_prefix,
        "PYTHONPATH": str(ROOT),
    }
    argv = [
        sys.executable,
        "-m",
        "queue_system",
        "--url",
        redis_url,
        "--prefix",
        key_prefix,
        "worker",
        "tests.integration.cli_app:config",
        "--burst",
        "--wait-scheduled",
    ]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
