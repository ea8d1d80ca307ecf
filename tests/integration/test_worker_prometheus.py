"""Worker-side Prometheus (PrometheusMiddleware, ``queue-system worker --metrics-port``): a real
workload through a real worker, scraped over HTTP and parsed with prometheus_client's parser."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.cli.main import cli
from queue_system.core.hooks import JobInfo, Outcome
from queue_system.engine.embedded_server import free_loopback_port
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.readme import run_readme_block
from tests.support.waiting import wait_until

parser = pytest.importorskip("prometheus_client.parser")
prometheus_client = pytest.importorskip("prometheus_client")
from queue_system.worker.prometheus import PrometheusMiddleware  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.cli_app:config"
FLAKY_CALLS: dict[int, int] = {}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def ok(data: dict[str, Any]) -> None:
    return None


def boom(data: dict[str, Any]) -> None:
    raise RuntimeError("boom")


def flaky(data: dict[str, Any]) -> None:
    FLAKY_CALLS[data["n"]] = FLAKY_CALLS.get(data["n"], 0) + 1
    if FLAKY_CALLS[data["n"]] == 1:
        raise RuntimeError("first run fails")


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(port: int) -> str | None:
    """The exposition at ``port``, or None while nothing serves it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return str(reply.read().decode())
    except (OSError, http.client.HTTPException):
        # HTTPException: a connect to an unbound port in the ephemeral range can pick that
        # same port as its source (TCP self-connect) and read its own request back.
        return None


def free_port_pair() -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` are free on loopback now."""
    for _ in range(50):
        port = free_loopback_port()
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port + 1))
            return port
    raise AssertionError("no two adjacent free loopback ports")


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def served() -> Iterator[tuple[PrometheusMiddleware, int]]:
    """A PrometheusMiddleware whose registry is served on a free loopback port."""
    middleware = PrometheusMiddleware()
    server, thread = prometheus_client.start_http_server(
        0, addr="127.0.0.1", registry=middleware.registry
    )
    yield middleware, server.server_port
    server.shutdown()
    server.server_close()
    thread.join()


def test_scrape_counts_match_the_workload(
    make_config: Callable[..., QueueConfig], served: tuple[PrometheusMiddleware, int]
) -> None:
    """Given: in 'alpha' 2 high + 1 normal succeed, 2 normal fail for good, 1 normal fails
    once then succeeds; in 'beta' 1 low succeeds. When a worker with the middleware drains
    them, the outcome counter and the histograms' counts say exactly that."""
    middleware, port = served
    config = make_config()
    config.add_middleware(middleware)
    manager = QueueManager(config)
    manager.enqueue_batch([{"n": 1}, {"n": 2}], ok, queue_name="alpha", priority="high")
    manager.enqueue({"n": 3}, ok, queue_name="alpha")
    no_retry = QueueRetryConfig(max_attempts=0)
    manager.enqueue_batch([{"n": 4}, {"n": 5}], boom, queue_name="alpha", retry_config=no_retry)
    once = QueueRetryConfig(max_attempts=1, delays=[0.01])
    manager.enqueue({"n": 6}, flaky, queue_name="alpha", retry_config=once)
    manager.enqueue({"n": 7}, ok, queue_name="beta", priority="low")
    run_burst(config)

    found = samples(scrape(port) or "")
    outcomes = "queue_system_outcomes_total"
    assert value(found, outcomes, queue="alpha", priority="high", status="succeeded") == 2
    assert value(found, outcomes, queue="alpha", priority="normal", status="succeeded") == 2
    assert value(found, outcomes, queue="alpha", priority="normal", status="failed") == 2
    assert value(found, outcomes, queue="alpha", priority="normal", status="retried") == 1
    assert value(found, outcomes, queue="beta", priority="low", status="succeeded") == 1
    assert sum(v for (name, _), v in found.items() if name == outcomes) == 8
    runs = {("alpha", "high"): 2, ("alpha", "normal"): 5, ("beta", "low"): 1}
    for family in ("queue_system_run_seconds", "queue_system_wait_seconds"):
        for (queue, priority), count in runs.items():
            labels = {"queue": queue, "priority": priority}
            assert value(found, f"{family}_count", **labels) == count, (family, labels)
            assert value(found, f"{family}_bucket", le="+Inf", **labels) == count
            assert value(found, f"{family}_sum", **labels) >= 0
    # The shared counters (any exporter) agree with this worker's own counts.
    shared = config.get_metrics()
    assert shared["succeeded"] == 5
    assert shared["failed"] == 2


def test_durations_land_in_their_buckets() -> None:
    """A run of exactly a bucket's bound counts in that bucket (le = less or equal); the sum
    is in seconds; an item that did not run counts as an outcome only."""
    middleware = PrometheusMiddleware(run_buckets=[0.1, 1.0], wait_buckets=[5.0])
    job = JobInfo(operation_id="x", queue="q", priority="high", processor="p", attempt=1, entity={})
    middleware.after_process_batch(
        [
            (job, Outcome(status="succeeded", duration_ms=100, wait_ms=5000)),
            (job, Outcome(status="succeeded", duration_ms=101, wait_ms=5001)),
        ]
    )
    middleware.after_process(job, Outcome(status="failed", duration_ms=2000, wait_ms=0))
    middleware.after_process(job, Outcome(status="expired", reason="expired"))
    found = samples(prometheus_client.generate_latest(middleware.registry).decode())
    labels = {"queue": "q", "priority": "high"}
    run = "queue_system_run_seconds_bucket"
    assert value(found, run, le="0.1", **labels) == 1
    assert value(found, run, le="1.0", **labels) == 2
    assert value(found, run, le="+Inf", **labels) == 3
    assert value(found, "queue_system_run_seconds_sum", **labels) == pytest.approx(2.201)
    assert value(found, "queue_system_wait_seconds_bucket", le="5.0", **labels) == 2
    assert value(found, "queue_system_wait_seconds_count", **labels) == 3
    expired = {"queue": "q", "priority": "high", "status": "expired"}
    assert value(found, "queue_system_outcomes_total", **expired) == 1


def test_buckets_must_be_positive_and_distinct() -> None:
    with pytest.raises(ValueError, match="buckets"):
        PrometheusMiddleware(run_buckets=[0.0, 1.0])
    with pytest.raises(ValueError, match="buckets"):
        PrometheusMiddleware(wait_buckets=[1.0, 1.0])


def test_a_missing_extra_is_a_clear_error(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises
    monkeypatch.delitem(sys.modules, "queue_system.worker.prometheus", raising=False)
    monkeypatch.setenv("CLI_APP_REDIS_URL", redis_url)
    monkeypatch.setenv("CLI_APP_PREFIX", key_prefix)
    # No --url/--prefix: cli_app may be imported already, with another test's prefix.
    result = cli_runner().invoke(cli, ["worker", APP, "--metrics-port", "1"])
    assert result.exit_code == 1, result.output
    assert "--metrics-port needs the [prometheus] extra" in result.stderr


def test_processes_with_port_zero_is_a_usage_error() -> None:
    args = ["worker", APP, "--processes", "2", "--metrics-port", "0"]
    result = cli_runner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "ports 0..1 must be in 1..65535" in result.stderr


def start_worker(redis_url: str, key_prefix: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "queue_system", "--url", redis_url, "--prefix", key_prefix]
    env = {
        **os.environ,
        "CLI_APP_REDIS_URL": redis_url,
        "CLI_APP_PREFIX": key_prefix,
        "PYTHONPATH": str(ROOT),
    }
    with log.open("wb") as sink:
        return subprocess.Popen(
            [*argv, "worker", APP, *args], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM the worker we started (by its pid) and wait for its exit 0."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def jobs(redis_url: str, key_prefix: str, count: int) -> list[dict[str, Any]]:
    keys = {"started_key": f"{key_prefix}t:started", "done_key": f"{key_prefix}t:done"}
    return [{"url": redis_url, "n": n, "seconds": 0, **keys} for n in range(count)]


def enqueue_cli_jobs(config: QueueConfig, redis_url: str, key_prefix: str, count: int) -> None:
    from tests.integration import cli_app

    QueueManager(config).enqueue_batch(
        jobs(redis_url, key_prefix, count), cli_app.slow, queue_name="jobs"
    )
    QueueManager(config).enqueue(
        {"n": 99},
        cli_app.always_fail,
        queue_name="jobs",
        retry_config=QueueRetryConfig(max_attempts=0),
    )


@pytest.mark.slow
def test_cli_worker_serves_its_metrics_port(
    make_config: Callable[..., QueueConfig],
    redis_url: str,
    key_prefix: str,
    raw_redis: redis.Redis,
    tmp_path: Path,
) -> None:
    config = make_config()
    enqueue_cli_jobs(config, redis_url, key_prefix, 6)
    port = free_loopback_port()
    log = tmp_path / "worker.log"
    proc = start_worker(redis_url, key_prefix, log, "--metrics-port", str(port))
    try:
        last: list[Samples] = []

        def counted() -> bool:
            last[:] = [samples(scrape(port) or "")]
            runs = value(last[0], "queue_system_run_seconds_count", queue="jobs", priority="normal")
            return runs == 7

        wait_until(counted, timeout=30, message=f"7 runs scraped; log: {log}")
        found = last[0]
        outcomes = "queue_system_outcomes_total"
        assert value(found, outcomes, queue="jobs", priority="normal", status="succeeded") == 6
        assert value(found, outcomes, queue="jobs", priority="normal", status="failed") == 1
        assert raw_redis.llen(f"{key_prefix}t:done") == 6
    finally:
        stop(proc, log)
    assert scrape(port) is None  # the server went with the process


@pytest.mark.slow
def test_cli_processes_each_child_serves_port_plus_its_slot(
    make_config: Callable[..., QueueConfig],
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    config = make_config()
    enqueue_cli_jobs(config, redis_url, key_prefix, 20)
    port = free_port_pair()
    log = tmp_path / "supervisor.log"
    proc = start_worker(redis_url, key_prefix, log, "--processes", "2", "--metrics-port", str(port))
    try:

        def total_runs() -> float | None:
            texts = [scrape(port), scrape(port + 1)]
            if None in texts:
                return None
            return sum(
                value(
                    samples(t or ""),
                    "queue_system_run_seconds_count",
                    queue="jobs",
                    priority="normal",
                )
                for t in texts
            )

        wait_until(lambda: total_runs() == 21, timeout=60, message=f"21 runs on 2 ports; {log}")
    finally:
        stop(proc, log)


def test_readme_worker_histograms(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Worker histograms", examples_url, tmp_path)
    assert "sending to ann@example.com" in stdout
    assert 'queue_system_run_seconds_count{priority="normal",queue="emails"} 1.0' in stdout
    assert (
        'queue_system_outcomes_total{priority="normal",queue="emails",status="succeeded"} 1.0'
        in stdout
    )


def test_each_supervised_child_gets_port_plus_its_slot() -> None:
    from queue_system.worker.supervisor import Supervisor, WorkerOptions

    sup = Supervisor(APP, 3, WorkerOptions(metrics_port=9701, metrics_host="0.0.0.0"))
    assert "--metrics-port=9703" in sup.child_argv(2)
    assert "--metrics-host=0.0.0.0" in sup.child_argv(2)
    plain = Supervisor(APP, 2, WorkerOptions()).child_argv(1)
    assert not [arg for arg in plain if arg.startswith("--metrics-")]
    with pytest.raises(ValueError, match="metrics_port"):
        WorkerOptions(metrics_port=0)
