"""The ``queue-system`` command, through click's runner and real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.cli import demo as demo_module
from queue_system.cli.main import cli
from queue_system.engine.embedded_server import EmbeddedRedis, free_loopback_port
from tests.integration import cli_app
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.cli_app:config"
NO_RETRY = QueueRetryConfig(max_attempts=0)


@pytest.fixture
def run(redis_url: str, key_prefix: str) -> Callable[..., Result]:
    """Invoke the CLI in-process on this test's namespace."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return cli_runner().invoke(
            cli, ["--url", redis_url, "--prefix", key_prefix, *args], input=input
        )

    return invoke


def command(url: str, prefix: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "queue_system", "--url", url, "--prefix", prefix, *args]


def child_env(redis_url: str, key_prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "CLI_APP_REDIS_URL": redis_url,
        "CLI_APP_PREFIX": key_prefix,
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def start_worker(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Start ``queue-system worker`` for cli_app in a subprocess; its log goes to a file."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"worker{len(started)}.log"
        argv = command(redis_url, key_prefix, "worker", APP, *args)
        env = child_env(redis_url, key_prefix)
        with log.open("wb") as sink:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=sink)
        started.append(proc)
        return proc, log

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def jobs(redis_url: str, key_prefix: str, count: int, seconds: float) -> list[dict[str, Any]]:
    keys = {"started_key": f"{key_prefix}t:started", "done_key": f"{key_prefix}t:done"}
    return [{"url": redis_url, "n": n, "seconds": seconds, **keys} for n in range(count)]


def exit_code(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """The process's exit status; on timeout, fail with its log."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running after {timeout}s; its log:\n{log.read_text()}")


def numbers(raw_redis: redis.Redis, key: str) -> list[int]:
    return sorted(int(v) for v in raw_redis.lrange(key, 0, -1))


def seed_failures(config: QueueConfig, count: int, queue: str = "jobs") -> list[str]:
    results = QueueManager(config).enqueue_batch(
        [{"n": n} for n in range(count)],
        cli_app.always_fail,
        queue_name=queue,
        retry_config=NO_RETRY,
    )
    run_burst(config, queues=[queue])
    return [r["operation_id"] for r in results]


# --- read-only commands ----------------------------------------------------------------------


def test_python_m_queue_system_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "queue_system", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    for name in (
        "worker",
        "status",
        "monitor",
        "job",
        "failures",
        "health",
        "workers",
        "purge",
        "demo",
    ):
        assert f"  {name}" in out.stdout


def test_status_json_and_table(run: Callable[..., Result], manager: QueueManager) -> None:
    manager.enqueue_batch(
        [{"n": n} for n in range(2)], cli_app.slow, queue_name="emails", priority="high"
    )
    manager.enqueue({"n": 3}, cli_app.slow, queue_name="emails")
    result = run("status", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)["queue_stats"]["emails"]
    assert (stats["high"], stats["normal"], stats["low"], stats["queue_size"]) == (2, 1, 0, 3)
    assert stats["oldest_age_s"] is not None
    table = run("status")
    assert table.exit_code == 0
    assert "emails" in table.stdout and "3 waiting" in table.stdout


def test_monitor_snapshot_and_a_few_live_refreshes(
    run: Callable[..., Result], manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="reports")
    snapshot = run("monitor", "--snapshot")
    assert snapshot.exit_code == 0 and "reports" in snapshot.stdout and "workers" in snapshot.stdout
    live = run("monitor", "--interval", "0.05", "--iterations", "3")
    assert live.exit_code == 0 and "reports" in live.stdout


def test_job_shows_an_operation_and_exits_1_when_unknown(
    run: Callable[..., Result], config: QueueConfig, manager: QueueManager
) -> None:
    manager.enqueue({"n": 0}, cli_app.slow, queue_name="jobs")
    op_id = manager.enqueue({"n": 1}, cli_app.slow, queue_name="jobs")["operation_id"]
    pending = run("job", op_id, "--json")
    assert pending.exit_code == 0, pending.output
    record = json.loads(pending.stdout)
    assert (record["status"], record["position"], record["queue_name"]) == ("pending", 1, "jobs")
    [failed_id] = seed_failures(config, 1, queue="doomed")
    failed = run("job", failed_id)
    assert failed.exit_code == 0
    assert all(text in failed.stdout for text in ("failed", "boom 0", "RuntimeError"))
    unknown = run("job", "no-such-operation")
    assert unknown.exit_code == 1 and "no-such-operation" in unknown.stderr


def test_failures_list_and_show_with_filters(
    run: Callable[..., Result], config: QueueConfig
) -> None:
    first = seed_failures(config, 3, queue="emails")
    seed_failures(config, 2, queue="reports")
    listed = run("failures", "list", "--json", "--queue", "emails", "--error", "RuntimeError")
    assert listed.exit_code == 0, listed.output
    assert sorted(r["operation_id"] for r in json.loads(listed.stdout)) == sorted(first)
    assert len(json.loads(run("failures", "list", "--json", "--limit", "4").stdout)) == 4
    assert json.loads(run("failures", "list", "--json", "--since", "1h").stdout) != []
    assert json.loads(run("failures", "list", "--json", "--until", "2001-01-01").stdout) == []
    assert json.loads(run("failures", "list", "--json", "--system-errors").stdout) == []
    table = run("failures", "list", "--processor", "always_fail")
    assert table.exit_code == 0 and "failures (5)" in table.stdout and "reports" in table.stdout
    shown = run("failures", "show", first[0], "--json")
    assert json.loads(shown.stdout)["history"][0]["error_type"] == "RuntimeError"
    text = run("failures", "show", first[0])
    assert "attempt 1" in text.stdout and "Traceback" in text.stdout and '"n":' in text.stdout
    missing = run("failures", "show", "nope")
    assert missing.exit_code == 1 and "nope" in missing.stderr
    bad = run("failures", "list", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_failures_show_also_finds_system_errors(
    run: Callable[..., Result], manager: QueueManager, make_config: Callable[..., QueueConfig]
) -> None:
    op_id = manager.enqueue({"n": 1}, "legacy.tasks:gone", queue_name="legacy")["operation_id"]
    run_burst(make_config(unknown_processor_ttl=0), queues=["legacy"])
    shown = run("failures", "show", op_id)
    assert shown.exit_code == 0, shown.output
    assert "system error" in shown.stdout and "unknown_processor" in shown.stdout
    assert json.loads(run("failures", "show", op_id, "--json").stdout)["operation_id"] == op_id


def test_failures_requeue_by_id_all_and_dry_run(
    run: Callable[..., Result], config: QueueConfig, raw_redis: redis.Redis
) -> None:
    ids = seed_failures(config, 4)
    assert run("failures", "requeue").exit_code == 2  # neither ids nor --all
    dry = run("failures", "requeue", "--all", "--dry-run", "--json")
    assert json.loads(dry.stdout)["count"] == 4 and raw_redis.llen(config.keys.failures) == 4
    one = run("failures", "requeue", ids[0], "--priority", "high")
    assert one.exit_code == 0 and f"1 failures records requeued: {ids[0]}" in one.stdout
    assert raw_redis.llen(config.keys.queue("jobs", "high")) == 1
    again = run("failures", "requeue", ids[0])
    assert again.exit_code == 1 and f"not found: {ids[0]}" in again.stderr
    rest = run("failures", "requeue", "--all", "--json")
    assert sorted(json.loads(rest.stdout)["operation_ids"]) == sorted(ids[1:])
    assert raw_redis.llen(config.keys.failures) == 0
    log = [json.loads(line) for line in rest.stderr.splitlines()]
    assert [(r["action"], r["count"], r["list"]) for r in log] == [("requeue", 3, "failures")]


def test_failures_purge_asks_first(
    run: Callable[..., Result], config: QueueConfig, raw_redis: redis.Redis
) -> None:
    seed_failures(config, 3)
    declined = run("failures", "purge", "--all", input="n\n")
    assert declined.exit_code == 1 and "Delete 3 failures records" in declined.output
    assert raw_redis.llen(config.keys.failures) == 3
    confirmed = run("failures", "purge", "--all", input="y\n")
    assert confirmed.exit_code == 0 and "3 failures records purged" in confirmed.stdout
    log = [json.loads(line) for line in confirmed.stderr.splitlines() if line.startswith("{")]
    assert [(r["action"], r["count"], r["dry_run"]) for r in log] == [("purge", 3, False)]
    assert raw_redis.llen(config.keys.failures) == 0
    assert run("failures", "purge", "--all", "--yes", "--system-errors").exit_code == 0


def test_failures_export_json_lines(
    run: Callable[..., Result], config: QueueConfig, tmp_path: Path
) -> None:
    seed_failures(config, 3)
    out = run("failures", "export")
    assert out.exit_code == 0
    assert [json.loads(line)["reason"] for line in out.stdout.splitlines()] == ["failed"] * 3
    target = tmp_path / "failures.jsonl"
    assert run("failures", "export", "--limit", "2", "-o", str(target)).exit_code == 0
    assert len(target.read_text().splitlines()) == 2


def test_purge_a_queue(run: Callable[..., Result], manager: QueueManager) -> None:
    manager.enqueue_batch([{"n": n} for n in range(3)], cli_app.slow, queue_name="old")
    manager.enqueue({"n": 9}, cli_app.slow, queue_name="old", priority="high")
    result = run("purge", "old", "--priority", "normal", "--yes")
    assert result.exit_code == 0 and "purged 3 waiting items of old (normal 3)" in result.stdout
    assert json.loads(run("status", "--json").stdout)["queue_stats"]["old"]["high"] == 1
    assert run("purge", "old", input="n\n").exit_code == 1


def test_health_exit_codes_and_no_password_printed(run: Callable[..., Result]) -> None:
    ok = run("health", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["redis_connected"] is True
    assert run("health").stdout.startswith("ok: ")
    url = f"redis://admin:s3cret@127.0.0.1:{free_loopback_port()}/0"
    for args in (["health"], ["health", "--json"], ["status"]):
        down = cli_runner().invoke(cli, ["--url", url, "--timeout", "1", *args])
        assert down.exit_code == 1, args
        assert "s3cret" not in down.output and "Traceback" not in down.output


def test_health_of_a_frozen_server_exits_1_in_bounded_time() -> None:
    server = EmbeddedRedis().start()  # our own: the suite's server is never frozen
    try:
        server.freeze()
        started = time.monotonic()
        args = ["--url", server.url, "--timeout", "1", "health", "--json"]
        result = cli_runner().invoke(cli, args)
        took = time.monotonic() - started
        assert result.exit_code == 1
        assert json.loads(result.stdout)["redis_connected"] is False
        assert took <= 2.0, took
    finally:
        server.stop()


def test_errors_are_one_line_unless_debug(redis_url: str, key_prefix: str) -> None:
    bad = subprocess.run(
        command("ftp://nowhere", key_prefix, "status"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: ")
    assert "invalid redis_url" in bad.stderr
    debug = subprocess.run(
        [
            *command("ftp://nowhere", key_prefix, "status")[:3],
            "--debug",
            *command("ftp://nowhere", key_prefix, "status")[3:],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    bad_prefix = cli_runner().invoke(cli, ["--url", redis_url, "--prefix", "no colon", "status"])
    assert bad_prefix.exit_code == 1 and "queue_prefix" in bad_prefix.stderr


def test_demo_runs_the_packaged_demo_on_the_given_url(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls: list[str | None] = []

    def fake_main(url: str | None) -> int:
        urls.append(url)
        return 3

    monkeypatch.setattr(demo_module, "main", fake_main)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert cli_runner().invoke(cli, ["--url", redis_url, "demo"]).exit_code == 3
    assert cli_runner().invoke(cli, ["demo"], env={"REDIS_URL": redis_url}).exit_code == 3
    assert cli_runner().invoke(cli, ["demo"]).exit_code == 3
    assert urls == [redis_url, redis_url, None]  # None: the demo starts its own server


@pytest.mark.slow
def test_demo_command_runs_the_real_demo(redis_url: str, key_prefix: str) -> None:
    out = subprocess.run(
        command(redis_url, key_prefix, "demo"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: every job ended in exactly one place" in out.stdout


# --- workers ---------------------------------------------------------------------------------


def test_worker_app_must_name_a_queue_config(run: Callable[..., Result], key_prefix: str) -> None:
    assert run("worker", "no_colon").exit_code == 2
    missing = run("worker", "tests.integration.nowhere:config")
    assert missing.exit_code == 1 and "cannot load" in missing.stderr
    wrong = run("worker", "tests.integration.cli_app:slow")
    assert wrong.exit_code == 1 and "not a QueueConfig" in wrong.stderr
    # cli_app reads its server and prefix from the environment: here unset, so they differ
    mismatch = run("worker", APP, "--burst")
    assert mismatch.exit_code == 2 and "--url" in mismatch.stderr


@pytest.mark.slow
def test_burst_worker_runs_everything_and_exits_0(
    redis_url: str,
    key_prefix: str,
    manager: QueueManager,
    raw_redis: redis.Redis,
    start_worker: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    manager.enqueue_batch(jobs(redis_url, key_prefix, 5, 0), cli_app.slow, queue_name="jobs")
    proc, log = start_worker("--burst", "--queues", "jobs", "--concurrency", "3")
    assert exit_code(proc, log, 60) == 0, log.read_text()
    assert numbers(raw_redis, f"{key_prefix}t:done") == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_sigterm_mid_job_loses_nothing(
    redis_url: str,
    key_prefix: str,
    config: QueueConfig,
    raw_redis: redis.Redis,
    run: Callable[..., Result],
    start_worker: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    started, done = f"{key_prefix}t:started", f"{key_prefix}t:done"
    QueueManager(config).enqueue_batch(
        jobs(redis_url, key_prefix, 6, 1.0), cli_app.slow, queue_name="jobs"
    )
    proc, log = start_worker("--concurrency", "2", "--grace-period", "20")
    wait_until(lambda: raw_redis.llen(started) == 2, timeout=30, message="two jobs running")
    # The live worker is visible while it runs
    [worker] = json.loads(run("workers", "--json").stdout)
    assert worker["pid"] == proc.pid and worker["concurrency"] == 2
    assert json.loads(run("status", "--json").stdout)["totals"]["in_flight"] >= 2

    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, log, 30) == 0, log.read_text()
    # The running items finished within the grace period; nothing is left in flight
    assert numbers(raw_redis, done) == numbers(raw_redis, started)
    assert raw_redis.hlen(config.keys.inflight) == 0
    items = raw_redis.lrange(config.keys.queue("jobs"), 0, -1)
    waiting = [json.loads(i)["entity"]["n"] for i in items]
    assert sorted(waiting + numbers(raw_redis, done)) == list(range(6))
    assert json.loads(run("workers", "--json").stdout) == []
    # A second worker finishes the rest: every item ran exactly once
    run_burst(config)
    assert numbers(raw_redis, done) == list(range(6))


@pytest.mark.slow
def test_second_signal_stops_at_once_and_releases_the_running_item(
    redis_url: str,
    key_prefix: str,
    config: QueueConfig,
    raw_redis: redis.Redis,
    start_worker: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    started = f"{key_prefix}t:started"
    QueueManager(config).enqueue_batch(
        jobs(redis_url, key_prefix, 1, 120), cli_app.slow, queue_name="jobs"
    )
    proc, log = start_worker("--grace-period", "120")
    wait_until(lambda: raw_redis.llen(started) == 1, timeout=30, message="job running")
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "send again" in log.read_text(), timeout=10, message="first signal seen")
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, log, 20) == 0, log.read_text()
    assert raw_redis.llen(config.keys.queue("jobs")) == 1
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert raw_redis.llen(f"{key_prefix}t:done") == 0


@pytest.mark.slow
def test_two_operators_requeue_all_at_once(
    redis_url: str, key_prefix: str, config: QueueConfig, raw_redis: redis.Redis
) -> None:
    expected = seed_failures(config, 50)
    argv = command(redis_url, key_prefix, "failures", "requeue", "--all", "--json")
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    counts = [json.loads(out)["count"] for out, _ in outputs]
    assert sum(counts) == 50
    assert raw_redis.llen(config.keys.failures) == 0
    waiting = [json.loads(i)["id"] for i in raw_redis.lrange(config.keys.queue("jobs"), 0, -1)]
    assert sorted(waiting) == sorted(expected)
