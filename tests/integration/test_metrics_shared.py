"""Metric totals are shared by every process, and a broken metric log handler breaks nothing.

Two burst worker processes drain one queue; a third process, which ran nothing, reads the
combined totals with ``config.get_metrics()``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.metrics.local import series_key
from tests.support.burst import run_burst
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PRIORITIES = ("high", "normal", "low")
QUEUE = "shared"
N = 2000  # large enough that both workers, started together, surely get some of it
CHILD_TIMEOUT_S = 90.0

WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    import redis
    from queue_system import QueueConfig, QueueWorker
    from tests.integration.test_metrics_shared import work
    url, prefix, ready, go = sys.argv[1:5]
    config = QueueConfig(redis_url=url, queue_prefix=prefix)
    config.register_callback(work)
    gate = redis.Redis.from_url(url)
    gate.rpush(ready, os.getpid())
    if gate.blpop([go], timeout=60) is None:  # start together with the other worker
        sys.exit("no go signal")
    asyncio.run(QueueWorker(config, max_workers=4, burst=True).run())
    """
)

READER_CHILD = textwrap.dedent(
    """
    import json, sys
    from queue_system import QueueConfig
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2])
    print(json.dumps(config.get_metrics()))
    """
)

# --- the processor (module level: the worker children import and register it) ---------------

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    with _clients_lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url)
        return _clients[url]


def work(entity: dict[str, Any]) -> None:
    """Counts its run per pid, works 1 ms, then succeeds, fails, or fails only its first run."""
    client = _client(entity["url"])
    client.hincrby(entity["runs_key"], str(os.getpid()), 1)
    time.sleep(0.001)  # simulated work, not synchronisation
    if entity["mode"] == "fail":
        raise ValueError(f"job {entity['i']} always fails")
    if entity["mode"] == "retry" and client.set(f"{entity['runs_key']}:{entity['i']}", 1, nx=True):
        raise ConnectionError(f"job {entity['i']} fails its first run")


def mode_of(i: int) -> str:
    return {0: "fail", 1: "retry"}.get(i % 10, "ok")


NEVER = QueueRetryConfig(max_attempts=0)
ONCE = QueueRetryConfig(max_attempts=1, delays=[0.0], jitter=0.0)


def enqueue_mix(manager: QueueManager, url: str, runs_key: str, n: int) -> None:
    """n jobs over the three priorities: 10 % fail for good, 10 % retried once, 80 % succeed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for i in range(n):
        entity = {"i": i, "mode": mode_of(i), "url": url, "runs_key": runs_key}
        groups.setdefault((PRIORITIES[i % 3], mode_of(i)), []).append(entity)
    retry = {"fail": NEVER, "retry": ONCE, "ok": NEVER}
    for (priority, mode), entities in sorted(groups.items()):
        results = manager.enqueue_batch(
            entities, work, queue_name=QUEUE, priority=priority, retry_config=retry[mode]
        )
        assert all(r["status"] == "queued" for r in results)


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by the test; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_two_worker_processes_add_up_in_a_third(
    redis_url: str,
    key_prefix: str,
    config: QueueConfig,
    manager: QueueManager,
    raw_redis: redis.Redis,
    children: list[subprocess.Popen[str]],
) -> None:
    runs_key = f"{key_prefix}test:runs_by_pid"
    ready, go = f"{key_prefix}test:ready", f"{key_prefix}test:go"
    enqueue_mix(manager, redis_url, runs_key, N)

    # Given two worker processes, held at a gate until both are up
    for _ in range(2):
        children.append(start(WORKER_CHILD, redis_url, key_prefix, ready, go))
    wait_until(lambda: raw_redis.llen(ready) == 2, timeout=30, message="both workers up")
    worker_pids = {int(pid) for pid in raw_redis.lrange(ready, 0, -1)}
    # When both drain the queue at once
    raw_redis.rpush(go, "go", "go")
    for proc in children:
        _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        assert proc.returncode == 0, err

    # Then a third process, which ran nothing itself, reads the combined totals
    reader = start(READER_CHILD, redis_url, key_prefix)
    children.append(reader)
    out, err = reader.communicate(timeout=CHILD_TIMEOUT_S)
    assert reader.returncode == 0, err
    metrics = json.loads(out)

    fails = sum(mode_of(i) == "fail" for i in range(N))
    retries = sum(mode_of(i) == "retry" for i in range(N))
    assert metrics["enqueued"] == N
    assert (metrics["succeeded"], metrics["failed"]) == (N - fails, fails)
    assert metrics["retried"] == retries
    assert metrics["system_errors"] == 0
    assert metrics["processed"] == metrics["succeeded"] + metrics["failed"] + metrics["retried"]
    assert metrics["success_rate"] == pytest.approx((N - fails) / N * 100)
    assert metrics["avg_process_time"] >= 1.0  # every run works 1 ms
    assert metrics["local"] == {}  # the reader's own view is empty: the totals are shared

    runs_by_priority = Counter(PRIORITIES[i % 3] for i in range(N))
    runs_by_priority.update(PRIORITIES[i % 3] for i in range(N) if mode_of(i) == "retry")
    by_priority = metrics["queues"][QUEUE]
    assert set(by_priority) == set(PRIORITIES)
    for priority in PRIORITIES:
        row = by_priority[priority]
        assert row["processed"] == runs_by_priority[priority], priority
        assert row["depth"] == 0
        assert row["avg_wait_ms"] > 0, priority  # the queue held 2000 jobs: all waited
    assert by_priority["high"]["avg_wait_ms"] < by_priority["low"]["avg_wait_ms"]

    # And both workers did part of the work, every run counted once
    runs = {int(pid): int(count) for pid, count in raw_redis.hgetall(runs_key).items()}
    assert set(runs) == worker_pids
    assert all(count > 0 for count in runs.values()), runs
    assert sum(runs.values()) == metrics["processed"]


# --- a failing metric log handler ------------------------------------------------------------


class BrokenHandler(logging.Handler):
    """A log shipper that is down: every emit raises."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.calls += 1
        raise RuntimeError("log shipper down")


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


OUTCOMES: Counter[str] = Counter()
FLAKY_RUNS: Counter[int] = Counter()


async def sometimes(entity: dict[str, Any]) -> None:
    """Succeeds, fails for good, or fails its first run only, as the entity says."""
    FLAKY_RUNS[entity["i"]] += 1
    if entity["mode"] == "fail" or (entity["mode"] == "retry" and FLAKY_RUNS[entity["i"]] == 1):
        raise ValueError(f"job {entity['i']} failed")
    OUTCOMES["succeeded"] += 1


@pytest.fixture
def broken_metric_log() -> Iterator[tuple[BrokenHandler, ListHandler]]:
    """A raising handler on the metric logger (where the JSON handler goes), and a capture of
    every queue_system record further up; both removed afterwards."""
    metrics_logger = logging.getLogger("queue_system.metrics")
    library_logger = logging.getLogger("queue_system")
    levels = (metrics_logger.level, library_logger.level)
    broken, captured = BrokenHandler(), ListHandler()
    metrics_logger.setLevel(logging.INFO)
    library_logger.setLevel(logging.INFO)
    metrics_logger.addHandler(broken)
    library_logger.addHandler(captured)
    yield broken, captured
    metrics_logger.removeHandler(broken)
    library_logger.removeHandler(captured)
    metrics_logger.setLevel(levels[0])
    library_logger.setLevel(levels[1])


def run_mix_with_broken_handler(make_config: Callable[..., QueueConfig]) -> QueueConfig:
    """Enqueue 30 jobs (10 succeed, 10 fail for good, 10 retried once) and drain them."""
    OUTCOMES.clear()
    FLAKY_RUNS.clear()
    config = make_config()
    config.register_callback(sometimes)
    manager = QueueManager(config)
    for mode, retry in (("ok", NEVER), ("fail", NEVER), ("retry", ONCE)):
        entities = [{"i": f"{mode}{i}", "mode": mode} for i in range(10)]
        manager.enqueue_batch(entities, sometimes, priority="high", retry_config=retry)
    run_burst(config, max_workers=5)
    return config


def test_broken_metric_log_handler_does_not_break_processing(
    make_config: Callable[..., QueueConfig], broken_metric_log: tuple[BrokenHandler, ListHandler]
) -> None:
    broken, _ = broken_metric_log
    config = run_mix_with_broken_handler(make_config)
    metrics = config.get_metrics()
    assert (metrics["enqueued"], metrics["succeeded"], metrics["failed"]) == (30, 20, 10)
    assert metrics["retried"] == 10
    assert OUTCOMES["succeeded"] == 20
    assert broken.calls > 1  # the handler was tried again and again, not dropped after once
    # the process-local counts went on too
    failed = series_key("failed", "sometimes", "high", f"{__name__}:sometimes")
    assert metrics["local"][failed] == 10


def test_broken_metric_log_handler_is_reported_once(
    make_config: Callable[..., QueueConfig], broken_metric_log: tuple[BrokenHandler, ListHandler]
) -> None:
    broken, captured = broken_metric_log
    run_mix_with_broken_handler(make_config)
    reports = [r for r in captured.records if "metrics update failed" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in captured.records]
    assert reports[0].levelno == logging.WARNING
    assert "log shipper down" in reports[0].getMessage()
    assert broken.calls > 1
