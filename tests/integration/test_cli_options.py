"""Global options and "nothing matched" answers of the ``queue-system`` command."""

from __future__ import annotations

import importlib.metadata
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from queue_system import QueueManager
from queue_system.cli.main import cli
from queue_system.engine.embedded_server import free_loopback_port
from tests.integration import cli_app
from tests.support.cli import cli_runner


@pytest.fixture
def run(redis_url: str, key_prefix: str) -> Callable[..., Result]:
    """Invoke the CLI in-process on this test's namespace."""

    def invoke(*args: str, input: str | None = None) -> Result:
        argv = ["--url", redis_url, "--prefix", key_prefix, *args]
        return cli_runner().invoke(cli, argv, input=input)

    return invoke


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], str]:
    """Write an application module naming ``url`` and ``prefix``; returns its 'module:config'."""
    monkeypatch.chdir(tmp_path)
    made: list[str] = []

    def make(url: str, prefix: str) -> str:
        name = f"app_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(
            "from queue_system import QueueConfig\n"
            f"config = QueueConfig(redis_url={url!r}, queue_prefix={prefix!r})\n"
        )
        made.append(name)
        return f"{name}:config"

    yield make  # type: ignore[misc]
    for name in made:
        module = sys.modules.pop(name, None)
        if module is not None:
            module.config.redis_client.close()


def test_worker_refuses_a_url_that_differs_from_the_apps(
    redis_url: str, key_prefix: str, make_app: Callable[[str, str], str]
) -> None:
    app = make_app(redis_url, key_prefix)
    other = f"redis://admin:s3cret@127.0.0.1:{free_loopback_port()}/0"
    result = cli_runner().invoke(
        cli, ["--url", other, "--prefix", key_prefix, "worker", app, "--burst"]
    )
    assert result.exit_code == 2, result.output
    assert "--url" in result.stderr and redis_url in result.stderr
    assert "s3cret" not in result.stderr and "127.0.0.1" in result.stderr


def test_worker_refuses_a_prefix_that_differs_from_the_apps(
    redis_url: str, key_prefix: str, make_app: Callable[[str, str], str]
) -> None:
    app = make_app(redis_url, key_prefix)
    result = cli_runner().invoke(cli, ["--prefix", "other:", "worker", app, "--burst"])
    assert result.exit_code == 2, result.output
    assert "'other:'" in result.stderr and repr(key_prefix) in result.stderr


def test_worker_runs_when_the_options_match_the_app(
    redis_url: str, key_prefix: str, make_app: Callable[[str, str], str]
) -> None:
    app = make_app(redis_url, key_prefix)
    result = cli_runner().invoke(
        cli, ["--url", redis_url, "--prefix", key_prefix, "worker", app, "--burst"]
    )
    assert result.exit_code == 0, result.output


def test_version_comes_from_the_installed_distribution(run: Callable[..., Result]) -> None:
    result = run("--version")
    assert result.exit_code == 0, result.output
    assert importlib.metadata.version("queue_system") in result.stdout


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_failures_list_limit_below_one_is_a_usage_error(
    run: Callable[..., Result], limit: str
) -> None:
    result = run("failures", "list", "--limit", limit)
    assert result.exit_code == 2, result.output
    assert "--limit" in result.stderr


def test_purge_of_an_unknown_queue_says_so_and_exits_1(
    run: Callable[..., Result], manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="known")
    result = run("purge", "nosuchqueue", "--yes")
    assert result.exit_code == 1, result.output
    assert "unknown queue 'nosuchqueue'" in result.stderr
    assert "purged" not in result.stdout


def test_worker_with_an_unknown_queue_in_burst_mode_says_so(
    redis_url: str, key_prefix: str, make_app: Callable[[str, str], str], manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="known")
    app = make_app(redis_url, key_prefix)
    result = cli_runner().invoke(cli, ["worker", app, "--queues", "known,nosuch", "--burst"])
    assert result.exit_code == 1, result.output
    assert "no such queue: nosuch" in result.stderr


@pytest.mark.parametrize("queues", ["", " , "])
def test_worker_queues_empty_is_a_usage_error(
    redis_url: str, key_prefix: str, make_app: Callable[[str, str], str], queues: str
) -> None:
    app = make_app(redis_url, key_prefix)
    result = cli_runner().invoke(cli, ["worker", app, "--queues", queues, "--burst"])
    assert result.exit_code == 2, result.output
    assert "--queues" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--interval", "-1", "--iterations", "1"),
        ("--interval", "0", "--iterations", "2"),
        ("--iterations", "-1", "--interval", "0.01"),
    ],
)
def test_monitor_refuses_a_negative_interval_or_iteration_count(
    run: Callable[..., Result], args: tuple[str, ...]
) -> None:
    result = run("monitor", *args)
    assert result.exit_code == 2, result.output
    assert args[0] in result.stderr
