"""Prometheus: a scrape (dashboard /metrics, `queue-system metrics`) parsed with
prometheus_client's parser matches get_metrics() and the queue state after a known workload."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from queue_system import QueueAdmin, QueueConfig, QueueManager, QueueRetryConfig
from queue_system.engine.embedded_server import free_loopback_port
from queue_system.ops.prometheus import exposition, make_registry
from queue_system.web import create_app
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.waiting import wait_until
from tests.support.web import TestClient

parser = pytest.importorskip("prometheus_client.parser")

FLAKY_CALLS: dict[int, int] = {}


def ok(data: dict[str, Any]) -> None:
    return None


def boom(data: dict[str, Any]) -> None:
    raise RuntimeError("boom")


def flaky(data: dict[str, Any]) -> None:
    FLAKY_CALLS[data["n"]] = FLAKY_CALLS.get(data["n"], 0) + 1
    if FLAKY_CALLS[data["n"]] == 1:
        raise RuntimeError("first run fails")


@pytest.fixture
def workload(make_config: Callable[..., QueueConfig]) -> QueueConfig:
    """Given: in 'alpha' 3 succeed (2 high, 1 normal), 2 fail for good, 1 succeeds on its
    retry; then 4 wait in 'beta' (1 high, 3 low) and 1 in 'alpha' normal."""
    config = make_config()
    manager = QueueManager(config)
    manager.enqueue_batch([{"n": 1}, {"n": 2}], ok, queue_name="alpha", priority="high")
    manager.enqueue({"n": 3}, ok, queue_name="alpha")
    no_retry = QueueRetryConfig(max_attempts=0)
    manager.enqueue_batch([{"n": 4}, {"n": 5}], boom, queue_name="alpha", retry_config=no_retry)
    once = QueueRetryConfig(max_attempts=1, delays=[0.01])
    manager.enqueue({"n": 6}, flaky, queue_name="alpha", retry_config=once)
    run_burst(config)
    manager.enqueue({"n": 7}, ok, queue_name="beta", priority="high")
    manager.enqueue_batch([{"n": n} for n in range(8, 11)], ok, queue_name="beta", priority="low")
    manager.enqueue({"n": 11}, ok, queue_name="alpha")
    return config


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from a text exposition."""
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_scrape_matches_get_metrics_and_queue_state(workload: QueueConfig) -> None:
    scraped = samples(exposition(make_registry(workload)).decode())
    shared = workload.get_metrics()
    health = QueueAdmin(workload).get_system_health()
    assert shared["enqueued"] == 11 and shared["succeeded"] == 4 and shared["failed"] == 2
    for field in ("enqueued", "processed", "succeeded", "failed", "retried", "system_errors"):
        assert scraped[(f"queue_system_{field}_total", ())] == shared[field], field  # type: ignore[literal-required]
    assert scraped[("queue_system_up", ())] == 1.0
    for queue, tiers in {"alpha": (0, 1, 0), "beta": (1, 0, 3)}.items():
        for priority, depth in zip(("high", "normal", "low"), tiers, strict=True):
            labels = (("priority", priority), ("queue", queue))
            assert scraped[("queue_system_waiting", labels)] == depth
            assert health["queue_stats"][queue][priority] == depth  # type: ignore[literal-required]
    assert scraped[("queue_system_dead_letters", (("list", "failures"), ("queue", "alpha")))] == 2
    assert (
        scraped[("queue_system_dead_letters", (("list", "system_errors"), ("queue", "alpha")))] == 0
    )
    assert scraped[("queue_system_in_flight", (("queue", "alpha"),))] == 0
    assert scraped[("queue_system_oldest_age_seconds", (("queue", "beta"),))] >= 0
    by_queue = shared["queues"]["alpha"]
    for priority in ("high", "normal"):
        labels = (("priority", priority), ("queue", "alpha"))
        processed = scraped[("queue_system_queue_processed_total", labels)]
        assert processed == by_queue[priority]["processed"]  # type: ignore[literal-required]
    assert scraped[("queue_system_workers_live", ())] == 0  # the burst worker has left


def test_every_family_has_help_and_counters_end_in_total(workload: QueueConfig) -> None:
    text = exposition(make_registry(workload)).decode()
    for family in parser.text_string_to_metric_families(text):
        assert family.name.startswith("queue_system_")
        assert family.documentation
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples)
        assert all(set(s.labels) <= {"queue", "priority", "list"} for s in family.samples)


def test_a_scrape_while_redis_is_down_says_so(make_config: Callable[..., QueueConfig]) -> None:
    config = make_config(
        redis_url=f"redis://127.0.0.1:{free_loopback_port()}/0", connection_timeout=0.5
    )
    scraped = samples(exposition(make_registry(config)).decode())
    assert scraped == {("queue_system_up", ()): 0.0}


def test_dashboard_metrics_endpoint_serves_the_same(workload: QueueConfig) -> None:
    with TestClient(create_app(workload, token="t")) as scraper:
        answer = scraper.get("/metrics", headers={"authorization": "Bearer t"})
    assert answer.headers["content-type"].startswith("text/plain")
    scraped = samples(answer.text)
    assert scraped[("queue_system_failed_total", ())] == 2
    assert scraped[("queue_system_waiting", (("priority", "low"), ("queue", "beta")))] == 3


def test_cli_metrics_once_prints_one_scrape(workload: QueueConfig) -> None:
    from queue_system.cli.main import cli

    url = workload.redis_client.connection_pool.connection_kwargs
    redis_url = f"redis://{url['host']}:{url['port']}/{url.get('db', 0)}"
    result = cli_runner().invoke(
        cli, ["--url", redis_url, "--prefix", workload.keys.prefix, "metrics", "--once"]
    )
    assert result.exit_code == 0, result.stderr
    assert samples(result.stdout)[("queue_system_enqueued_total", ())] == 11


@pytest.mark.slow
def test_cli_metrics_serves_http(workload: QueueConfig, redis_url: str) -> None:
    port = free_loopback_port()
    command = [
        sys.executable,
        "-m",
        "queue_system",
        "--url",
        redis_url,
        "--prefix",
        workload.keys.prefix,
        "metrics",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=dict(os.environ))
    try:

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return None

        wait_until(lambda: scrape() is not None, timeout=20, message="metrics server up")
        assert samples(scrape() or "")[("queue_system_succeeded_total", ())] == 4
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


GRAFANA = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "queue_system.json"


def test_grafana_dashboard_uses_only_metrics_a_scrape_has(workload: QueueConfig) -> None:
    dashboard = json.loads(GRAFANA.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bqueue_system_\w+", expr)}
    scraped = {name for name, _ in samples(exposition(make_registry(workload)).decode())}
    assert len(used) >= 12
    assert used <= scraped, used - scraped
    assert {"queue_system_queue_succeeded_total", "queue_system_queue_oldest_age_seconds"} <= used
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
