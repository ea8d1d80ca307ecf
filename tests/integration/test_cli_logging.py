"""``queue-system worker`` logs for the whole process; metric records only when asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from queue_system import QueueConfig, QueueManager

ROOT = Path(__file__).resolve().parents[2]
APP = """
import logging
from queue_system import QueueConfig

config = QueueConfig(redis_url={url!r}, queue_prefix={prefix!r})
log = logging.getLogger("shop.orders")


@config.register_callback
def ship(entity):
    log.info("shipping order %s", entity["order"])
    log.debug("order %s details", entity["order"])
"""


def run_worker(
    tmp_path: Path, url: str, prefix: str, *args: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "shopapp.py").write_text(APP.format(url=url, prefix=prefix))
    argv = [sys.executable, "-m", "queue_system", "worker", "shopapp:config", "--burst", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def enqueue_orders(config: QueueConfig, count: int) -> None:
    QueueManager(config).enqueue_batch([{"order": n} for n in range(count)], "shopapp:ship")


@pytest.mark.slow
def test_worker_log_shows_the_applications_own_lines_as_text(
    tmp_path: Path, redis_url: str, key_prefix: str, config: QueueConfig
) -> None:
    enqueue_orders(config, 3)
    out = run_worker(tmp_path, redis_url, key_prefix, "--log-format", "text")
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert sum("shop.orders" in line and "shipping order" in line for line in lines) == 3
    assert not any(line.startswith("{") for line in lines), out.stderr
    assert "details" not in out.stderr  # INFO by default
    assert "Queue metric update" not in out.stderr  # no metric records by default


@pytest.mark.slow
def test_worker_log_level_debug_and_json(
    tmp_path: Path, redis_url: str, key_prefix: str, config: QueueConfig
) -> None:
    enqueue_orders(config, 2)
    out = run_worker(
        tmp_path, redis_url, key_prefix, "--log-level", "debug", "--log-format", "json"
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stderr.splitlines()]
    app = [r["message"] for r in records if r["logger"] == "shop.orders"]
    assert sorted(app) == sorted(
        [f"shipping order {n}" for n in range(2)] + [f"order {n} details" for n in range(2)]
    )


@pytest.mark.slow
def test_metric_records_appear_with_metrics_log(
    tmp_path: Path, redis_url: str, key_prefix: str, config: QueueConfig
) -> None:
    enqueue_orders(config, 2)
    out = run_worker(tmp_path, redis_url, key_prefix, "--metrics-log")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stderr.splitlines()]
    assert any(r["logger"] == "queue_system.metrics" for r in records), out.stderr


def test_bad_log_level_is_a_usage_error(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    out = run_worker(tmp_path, redis_url, key_prefix, "--log-level", "loud")
    assert out.returncode == 2
    assert "--log-level" in out.stderr
