"""What the ``queue-system`` command writes: closed pipes, frames when piped, 80 columns."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import Result
from rich.table import Table

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.cli.cancel import running_views
from queue_system.cli.main import cli
from queue_system.cli.render import make_console, workers_table
from queue_system.core.types import RunningOperation, WorkerInfo
from tests.integration import cli_app
from tests.support.burst import run_burst
from tests.support.cli import cli_runner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Invoke the CLI in-process on this test's namespace, in an 80-column terminal."""
    monkeypatch.setenv("COLUMNS", "80")

    def invoke(*args: str) -> Result:
        return cli_runner().invoke(cli, ["--url", redis_url, "--prefix", key_prefix, *args])

    return invoke


def command(url: str, prefix: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "queue_system", "--url", url, "--prefix", prefix, *args]


def read_one_line_and_close(argv: list[str]) -> tuple[str, int, str]:
    """Like ``argv | head -1``: the first line, then the exit status and stderr."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline().decode()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    return first, proc.wait(timeout=60), stderr


def printed(capsys: pytest.CaptureFixture[str], *tables: Table) -> str:
    """What the CLI's console writes for ``tables``."""
    console = make_console()
    for table in tables:
        console.print(table)
    return capsys.readouterr().out


def seed_failure(config: QueueConfig, entity: dict[str, object], queue: str = "jobs") -> str:
    [result] = QueueManager(config).enqueue_batch(
        [entity],
        cli_app.always_fail,
        queue_name=queue,
        retry_config=QueueRetryConfig(max_attempts=0),
    )
    run_burst(config, queues=[queue])
    return str(result["operation_id"])


@pytest.mark.slow
def test_a_closed_pipe_ends_failures_show_quietly(
    redis_url: str, key_prefix: str, config: QueueConfig
) -> None:
    # A payload far larger than a pipe's buffer: the command is still writing when head leaves
    op_id = seed_failure(config, {"n": 1, "blob": ["x" * 100] * 5000})
    first, code, stderr = read_one_line_and_close(
        command(redis_url, key_prefix, "failures", "show", op_id)
    )
    assert first.strip()
    assert (code, stderr) == (0, "")


@pytest.mark.slow
def test_a_closed_pipe_ends_status_quietly(
    redis_url: str, key_prefix: str, config: QueueConfig, raw_redis: redis.Redis
) -> None:
    raw_redis.sadd(config.keys.registry, *[f"queue_{n:04d}" for n in range(1500)])
    first, code, stderr = read_one_line_and_close(command(redis_url, key_prefix, "status"))
    assert first.strip()
    assert (code, stderr) == (0, "")


@pytest.mark.slow
def test_monitor_writes_one_frame_per_interval_when_piped(
    redis_url: str, key_prefix: str, manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="reports")
    out = subprocess.run(
        command(redis_url, key_prefix, "monitor", "--interval", "0.05", "--iterations", "3"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("reports") == 3, out.stdout
    assert out.stdout.count("workers (0)") == 3
    assert "\x1b[" not in out.stdout  # plain text, no cursor movement


def test_failures_list_fits_80_columns_with_whole_ids(
    run: Callable[..., Result], config: QueueConfig
) -> None:
    ids = [seed_failure(config, {"n": n}, queue="a_rather_long_queue_name") for n in range(2)]
    result = run("failures", "list")
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80, result.stdout
    assert all(op_id in result.stdout for op_id in ids), result.stdout
    wide = run("failures", "list", "--wide")
    assert all(op_id in wide.stdout for op_id in ids)
    assert "message" in wide.stdout and "processor" in wide.stdout


def test_status_fits_80_columns_and_wide_shows_every_column(
    run: Callable[..., Result], manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="emails_for_customers")
    result = run("status")
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80, result.stdout
    assert "emails_for_customers" in result.stdout
    wide = run("status", "--wide")
    assert all(column in wide.stdout for column in ("system errors", "oldest waiting"))


def test_workers_table_fits_80_columns_with_whole_ids(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    worker: WorkerInfo = {
        "id": "build-host-0042.example.internal:123456:0123abcd",
        "host": "build-host-0042.example.internal",
        "pid": 123456,
        "queues": ["emails", "reports", "billing"],
        "concurrency": 20,
        "running": 3,
        "jobs_done": 123456,
        "jobs_failed": 12,
        "started_at": "2024-05-06T07:08:09+00:00",
        "last_seen": "2024-05-06T07:18:09+00:00",
        "supervisor": "build-host-0042.example.internal:123400:4567cdef",
    }
    out = printed(capsys, workers_table([worker], width=make_console().width))
    assert max(map(len, out.splitlines())) <= 80, out
    assert worker["id"] in out
    make_console(wide=True).print(workers_table([worker], width=None))
    wide = capsys.readouterr().out
    assert "started (UTC)" in wide and worker["id"] in wide


def test_an_empty_failures_list_says_so(run: Callable[..., Result]) -> None:
    result = run("failures", "list", "--queue", "nothing_here")
    assert result.exit_code == 0
    assert "no failures records match" in result.stderr
    assert json.loads(run("failures", "list", "--json").stdout) == []


def test_scheduled_fits_80_columns_with_whole_ids(
    run: Callable[..., Result], manager: QueueManager
) -> None:
    ids = [
        manager.enqueue({"n": n}, cli_app.slow, queue_name="a_rather_long_queue_name", delay=3600)[
            "operation_id"
        ]
        for n in range(2)
    ]
    result = run("scheduled")
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80, result.stdout
    assert all(op_id in result.stdout for op_id in ids), result.stdout
    assert "…" not in result.stdout, result.stdout
    # The queue name may wrap onto a second line, never be cut
    rows = [line.split("│") for line in result.stdout.splitlines() if line.startswith("│")]
    assert "".join(row[2].strip() for row in rows).count("a_rather_long_queue_name") == 2


def test_cron_fits_80_columns_with_whole_names(
    run: Callable[..., Result], config: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given: two schedules a live worker published (its processor's name is the default name)
    raw_redis.set(config.keys.worker("w1"), "{}")
    now_ms = int(config.clock.time() * 1000)
    for name, fields in {
        "shop.tasks:nightly_report": {"expression": "30 2 * * *", "timezone": "Europe/Berlin"},
        "poll": {"every_ms": 3_600_000, "timezone": "UTC"},
    }.items():
        entry = {
            "name": name,
            "processor": "shop.tasks:nightly_report",
            "expression": None,
            "every_ms": None,
            "queue_name": "reports",
            "priority": "normal",
            "catch_up": "none",
            "worker": "w1",
            "published_at": now_ms,
            **fields,
        }
        raw_redis.hset(config.keys.cron_schedules, name, json.dumps(entry))

    result = run("cron")

    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80, result.stdout
    assert "shop.tasks:nightly_report" in result.stdout, result.stdout
    assert "…" not in result.stdout, result.stdout
    assert result.stdout.count("live") == 2, result.stdout


def test_monitors_running_table_fits_80_columns_with_whole_ids(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    running: RunningOperation = {
        "operation_id": "cron:shop.tasks:nightly_report:1796278680000",
        "queue_name": "reports",
        "processor": "shop.tasks:nightly_report",
        "worker": "build-host-0042.example.internal:123456:0123abcd",
        "started_at": "2026-12-03T06:18:00.000+00:00",
        "progress": {"step": "rendering the monthly report", "done": 41, "of": 50},
        "cancel_requested_at": None,
    }
    out = printed(capsys, *running_views([running], width=make_console().width))
    assert max(map(len, out.splitlines())) <= 80, out
    assert running["operation_id"] in out, out
