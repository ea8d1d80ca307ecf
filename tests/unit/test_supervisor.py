"""The supervisor's pure parts: process counts, child options, crash-loop counting, RSS."""

from __future__ import annotations

import asyncio
import os

import pytest

from queue_system.cli.worker import worker as worker_command
from queue_system.errors import WorkerCrashLoopError
from queue_system.worker.child import RecycleLimits, rss_mb
from queue_system.worker.supervisor import (
    Supervisor,
    WorkerOptions,
    cpu_count,
    describe,
    parse_processes,
)


def test_processes_is_a_positive_count_or_auto() -> None:
    assert parse_processes("auto") == cpu_count() >= 1
    assert parse_processes(3) == 3
    assert parse_processes("2") == 2


@pytest.mark.parametrize("bad", [0, -1, "0", "two", "2.5", 2.5, True, None])
def test_other_process_counts_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="processes"):
        parse_processes(bad)  # type: ignore[arg-type]


def test_child_options_become_the_worker_command_line() -> None:
    options = WorkerOptions(
        queues=["emails", "reports"],
        concurrency=7,
        burst=True,
        wait_scheduled=True,
        outage_limit=12.5,
        grace_period=3.0,
        work_timeout=40.0,
        max_jobs=100,
        max_memory_mb=512.0,
        log_level="warning",
        log_format="text",
        metrics_log=True,
        executor="process",
        metrics_port=9701,
        metrics_host="0.0.0.0",
    )
    # The worker command parses them back to the same settings (slot 0: the port as given)
    argv = ["app:config", *options.argv(), *options.slot_argv(0)]
    ctx = worker_command.make_context("worker", argv)
    assert ctx.params | {"app": None} == {
        "app": None,
        "queues": "emails,reports",
        "concurrency": 7,
        "burst": True,
        "wait_scheduled": True,
        "outage_limit": 12.5,
        "grace_period": 3.0,
        "work_timeout": 40.0,
        "max_jobs": 100,
        "max_memory": 512.0,
        "log_level": "warning",
        "log_format": "text",
        "metrics_log": True,
        "processes": None,
        "supervised_by": None,
        "executor": "process",
        "metrics_port": 9701,
        "metrics_host": "0.0.0.0",
    }


def test_default_child_options_are_the_worker_defaults() -> None:
    parsed = worker_command.make_context("worker", ["app:config", *WorkerOptions().argv()])
    defaults = worker_command.make_context("worker", ["app:config"])
    assert parsed.params == defaults.params


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"queues": "emails"}, "queues"),
        ({"queues": ["bad name"]}, "queue"),
        ({"wait_scheduled": True}, "wait_scheduled"),
        ({"grace_period": -1}, "grace_period"),
        ({"work_timeout": 0}, "work_timeout"),
        ({"outage_limit": 0}, "outage_limit"),
        ({"max_jobs": 0}, "max_jobs"),
        ({"max_memory_mb": 0}, "max_memory_mb"),
        ({"log_level": "loud"}, "log_level"),
        ({"log_format": "xml"}, "log_format"),
        ({"executor": "fork"}, "executor"),
    ],
)
def test_bad_child_options_are_refused_before_any_child_starts(
    settings: dict[str, object], error: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        WorkerOptions(**settings)  # type: ignore[arg-type]


def test_an_unknown_child_option_is_an_error() -> None:
    with pytest.raises(TypeError):
        WorkerOptions(concurency=2)  # type: ignore[call-arg]


def test_each_child_is_the_worker_command_naming_its_supervisor() -> None:
    supervisor = Supervisor("shop.tasks:config", 2, WorkerOptions(concurrency=4))
    argv = supervisor.child_argv()
    assert argv[1:5] == ["-m", "queue_system", "worker", "shop.tasks:config"]
    assert "--concurrency=4" in argv
    assert argv[-1] == f"--supervised-by={supervisor.supervisor_id}"
    assert f":{os.getpid()}:" in supervisor.supervisor_id


@pytest.mark.parametrize(
    "kwargs",
    [{"processes": 0}, {"restart_limit": 0}, {"restart_window_s": 0}, {"processes": True}],
)
def test_bad_supervisor_settings_are_refused(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"processes": 1, **kwargs}
    with pytest.raises((ValueError, TypeError)):
        Supervisor("app:config", **settings)  # type: ignore[arg-type]


def test_a_crash_loop_is_restart_limit_deaths_within_the_window() -> None:
    supervisor = Supervisor("app:config", 1, restart_limit=3, restart_window_s=10)
    assert not supervisor._crash_looping(0.0)
    assert not supervisor._crash_looping(5.0)
    assert not supervisor._crash_looping(10.5)  # the first death has left the window
    assert supervisor._crash_looping(12.0)  # 5.0, 10.5, 12.0


def test_wait_statuses_read_as_words() -> None:
    assert describe(1) == "exit 1"
    assert describe(-9) == "killed by SIGKILL"
    assert describe(-200) == "killed by signal 200"


def test_recycle_limits_are_checked() -> None:
    assert not RecycleLimits().any
    assert RecycleLimits(max_jobs=1).any and RecycleLimits(max_memory_mb=0.5).any
    with pytest.raises(TypeError):
        RecycleLimits(max_jobs=True)
    with pytest.raises(ValueError):
        RecycleLimits(max_memory_mb=-1)


def test_rss_follows_what_this_process_holds() -> None:
    before = rss_mb()
    held = b"x" * (64 * 1024 * 1024)  # written, so resident
    assert rss_mb() - before > 50
    del held


def test_children_that_cannot_even_start_are_a_crash_loop() -> None:
    # A real spawn failure (no such interpreter): each counts as a death, with backoff
    supervisor = Supervisor("app:config", 1, restart_limit=2, python="/nonexistent/python3")
    with pytest.raises(WorkerCrashLoopError, match="could not start"):
        asyncio.run(supervisor.run())
    assert supervisor.children == {}
