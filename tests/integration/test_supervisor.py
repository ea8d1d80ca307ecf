"""``queue-system worker --processes N``: a supervisor of worker processes that loses nothing.

Every process here is started by the test and ended by its pid: the supervisor (a subprocess)
and its children (found in ``workers``, checked to be ours by their command line).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.cli.main import cli
from queue_system.core.types import WorkerInfo
from tests.integration import procs_app
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.readme import run_readme_block
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.procs_app:config"


@dataclass
class Supervised:
    """A supervisor the test started, and where to read what it did."""

    proc: subprocess.Popen[bytes]
    log: Path
    manager: QueueManager
    killed: set[int] = field(default_factory=set)

    def children(self) -> list[WorkerInfo]:
        """Live children of this supervisor (by their heartbeat records), minus killed ones."""
        return [
            w
            for w in self.manager.get_workers()
            if w["supervisor"] is not None
            and f":{self.proc.pid}:" in w["supervisor"]
            and w["pid"] not in self.killed
        ]

    def child_pids(self) -> set[int]:
        return {w["pid"] for w in self.children()}

    def kill_child(self, pid: int) -> None:
        assert _is_our_child(pid), pid
        os.kill(pid, signal.SIGKILL)
        self.killed.add(pid)

    def exit_code(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"supervisor still running after {timeout}s; log:\n{self.log.read_text()}")


def _is_our_child(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"--supervised-by=" in cmdline and APP.encode() in cmdline


@pytest.fixture
def env(redis_url: str, key_prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "PROCS_APP_REDIS_URL": redis_url,
        "PROCS_APP_PREFIX": key_prefix,
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def supervise(
    env: dict[str, str], tmp_path: Path, manager: QueueManager
) -> Iterator[Callable[..., Supervised]]:
    """Start a supervisor (``worker APP *args`` or a ``python -c`` script); end what is left."""
    started: list[Supervised] = []
    seen: set[int] = set()

    def start(*args: str, script: str | None = None) -> Supervised:
        log = tmp_path / f"supervisor{len(started)}.log"
        if script is None:
            argv = [sys.executable, "-m", "queue_system", "worker", APP, *args]
        else:
            argv = [sys.executable, "-c", script]
        with log.open("wb") as sink:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=sink)
        supervised = Supervised(proc, log, manager)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        seen |= supervised.child_pids()
        if supervised.proc.poll() is None:
            supervised.proc.kill()
            supervised.proc.wait()
    for pid in seen:
        if _is_our_child(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def run_cli(redis_url: str, key_prefix: str) -> Callable[..., str]:
    """Invoke the CLI in-process on this test's namespace; its stdout."""

    def invoke(*args: str) -> str:
        result = cli_runner().invoke(cli, ["--url", redis_url, "--prefix", key_prefix, *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    return invoke


@dataclass
class Jobs:
    """Keys the processor reports to, and the entities of a batch of jobs."""

    url: str
    prefix: str

    @property
    def started(self) -> str:
        return f"{self.prefix}t:started"

    @property
    def done(self) -> str:
        return f"{self.prefix}t:done"

    @property
    def pids(self) -> str:
        return f"{self.prefix}t:pids"

    def entities(self, count: int, seconds: float) -> list[dict[str, Any]]:
        keys = {"started_key": self.started, "done_key": self.done, "pids_key": self.pids}
        return [{"url": self.url, "n": n, "seconds": seconds, **keys} for n in range(count)]


@pytest.fixture
def jobs(redis_url: str, key_prefix: str) -> Jobs:
    return Jobs(redis_url, key_prefix)


def numbers(raw_redis: redis.Redis, key: str) -> list[int]:
    return sorted(int(v) for v in raw_redis.lrange(key, 0, -1))


def waiting(raw_redis: redis.Redis, config: QueueConfig) -> list[int]:
    items = raw_redis.lrange(config.keys.queue("jobs"), 0, -1)
    return [json.loads(i)["entity"]["n"] for i in items]


def test_each_child_appears_in_workers_with_its_pid_and_supervisor(
    supervise: Callable[..., Supervised], run_cli: Callable[..., str]
) -> None:
    sup = supervise("--processes", "2", "--concurrency", "3")
    wait_until(lambda: len(sup.children()) == 2, timeout=30, message="two children up")
    children = sup.children()
    pids = {w["pid"] for w in children}
    assert len(pids) == 2 and sup.proc.pid not in pids
    [supervisor_id] = {w["supervisor"] for w in children}
    host = children[0]["host"]
    assert supervisor_id is not None and supervisor_id.startswith(f"{host}:{sup.proc.pid}:")
    assert all(w["concurrency"] == 3 and str(w["pid"]) in str(w["id"]) for w in children)
    # The operator's view: `workers --json` shows both, each naming the supervisor
    shown = json.loads(run_cli("workers", "--json"))
    assert {w["pid"]: w["supervisor"] for w in shown} == {pid: supervisor_id for pid in pids}
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.exit_code(30) == 0, sup.log.read_text()
    assert sup.children() == []


def test_sigkilled_child_is_replaced_and_nothing_is_lost(
    supervise: Callable[..., Supervised],
    manager: QueueManager,
    config: QueueConfig,
    raw_redis: redis.Redis,
    jobs: Jobs,
) -> None:
    # Given two children working through 40 jobs
    manager.enqueue_batch(jobs.entities(40, 0.1), procs_app.job, queue_name="jobs")
    sup = supervise("--processes", "2", "--concurrency", "2")
    wait_until(lambda: raw_redis.llen(jobs.started) >= 4, timeout=30, message="jobs running")
    wait_until(lambda: len(sup.children()) == 2, timeout=30, message="two children up")
    # When one of them is SIGKILLed mid-job
    [victim, survivor] = sorted(sup.child_pids())
    sup.kill_child(victim)
    # Then the supervisor starts another, and every job completes (the victim's leased
    # items come back when their leases expire)
    wait_until(lambda: len(sup.child_pids() - {survivor}) == 1, timeout=30, message="replaced")
    wait_until(
        lambda: set(numbers(raw_redis, jobs.done)) == set(range(40)),
        timeout=60,
        message="every job done",
    )
    assert "died (killed by SIGKILL); restarting it" in sup.log.read_text()
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.exit_code(30) == 0, sup.log.read_text()
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert config.get_metrics()["succeeded"] >= 40


def test_graceful_stop_of_children_under_load_loses_nothing_and_exits_0(
    supervise: Callable[..., Supervised],
    manager: QueueManager,
    config: QueueConfig,
    raw_redis: redis.Redis,
    jobs: Jobs,
) -> None:
    # Given two children each running two 0.5 s jobs (and holding more claimed ahead)
    manager.enqueue_batch(jobs.entities(30, 0.5), procs_app.job, queue_name="jobs")
    sup = supervise("--processes", "2", "--concurrency", "2", "--grace-period", "30")
    wait_until(lambda: len(set(raw_redis.lrange(jobs.pids, 0, -1))) == 2, timeout=30)
    # When the supervisor gets SIGTERM
    sup.proc.send_signal(signal.SIGTERM)
    # Then it exits 0 once each child has finished its running jobs and given back the rest
    assert sup.exit_code(30) == 0, sup.log.read_text()
    assert numbers(raw_redis, jobs.done) == numbers(raw_redis, jobs.started)
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert sorted(waiting(raw_redis, config) + numbers(raw_redis, jobs.done)) == list(range(30))
    assert sup.children() == []
    # And a later worker runs the rest: every job ran exactly once
    run_burst(config)
    assert numbers(raw_redis, jobs.done) == list(range(30))


def test_second_sigint_stops_the_children_at_once(
    supervise: Callable[..., Supervised],
    manager: QueueManager,
    config: QueueConfig,
    raw_redis: redis.Redis,
    jobs: Jobs,
) -> None:
    manager.enqueue_batch(jobs.entities(2, 120), procs_app.job, queue_name="jobs")
    sup = supervise("--processes", "2", "--concurrency", "1", "--grace-period", "120")
    wait_until(lambda: raw_redis.llen(jobs.started) >= 1, timeout=30, message="a job running")
    wait_until(lambda: len(sup.children()) == 2, timeout=30, message="two children up")
    # The children are frozen while both signals are forwarded, as a busy machine may leave
    # them unscheduled: the kernel keeps one pending SIGINT, so the second must differ
    pids = sup.child_pids()
    for pid in pids:
        assert _is_our_child(pid)
        os.kill(pid, signal.SIGSTOP)
    sup.proc.send_signal(signal.SIGINT)
    wait_until(lambda: "send again" in sup.log.read_text(), timeout=10, message="first seen")
    began = time.monotonic()
    sup.proc.send_signal(signal.SIGINT)
    wait_until(lambda: "again: stopping" in sup.log.read_text(), timeout=10, message="second")
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    assert sup.exit_code(20) == 0, sup.log.read_text()
    assert time.monotonic() - began < 8  # the children stopped themselves, well before
    # FORCE_KILL_AFTER_S (10 s) and the 120 s grace period
    assert "still alive; killing it" not in sup.log.read_text()
    # The running jobs were given back, not lost and not finished
    assert sorted(waiting(raw_redis, config)) == [0, 1]
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert raw_redis.llen(jobs.done) == 0


def test_a_crash_loop_stops_the_supervisor_with_a_non_zero_exit(
    supervise: Callable[..., Supervised],
) -> None:
    # Given a supervisor that calls 3 deaths within 60 s a crash loop
    sup = supervise(
        script=f"import queue_system; queue_system.run_workers({APP!r}, processes=1, "
        "restart_limit=3, log_format='text')"
    )
    # When its child dies three times (as if the OOM killer kept killing it)
    for _ in range(3):
        wait_until(lambda: len(sup.children()) == 1, timeout=30, message="a child up")
        [pid] = sup.child_pids()
        sup.kill_child(pid)
    # Then it stops, loudly, with a non-zero exit
    assert sup.exit_code(30) != 0
    log = sup.log.read_text()
    assert "WorkerCrashLoopError: 3 worker processes died within 60s" in log, log
    assert sup.children() == []


def test_max_jobs_recycles_children_and_loses_nothing(
    supervise: Callable[..., Supervised],
    manager: QueueManager,
    config: QueueConfig,
    raw_redis: redis.Redis,
    jobs: Jobs,
) -> None:
    manager.enqueue_batch(jobs.entities(30, 0.02), procs_app.job, queue_name="jobs")
    sup = supervise("--processes", "1", "--concurrency", "2", "--max-jobs", "5")
    wait_until(lambda: raw_redis.llen(jobs.done) >= 30, timeout=60, message="every job done")
    # Each recycled child finished its running jobs and gave back what it had claimed ahead:
    # every job ran exactly once, in several processes
    assert numbers(raw_redis, jobs.done) == list(range(30))
    assert len(set(raw_redis.lrange(jobs.pids, 0, -1))) >= 3
    assert "recycled; starting a fresh one" in sup.log.read_text()
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.exit_code(30) == 0, sup.log.read_text()
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_sigterm_during_a_recycle_stop_still_lets_running_items_finish(
    supervise: Callable[..., Supervised],
    manager: QueueManager,
    config: QueueConfig,
    raw_redis: redis.Redis,
    jobs: Jobs,
) -> None:
    # A SIGTERM that lands while --max-jobs is already stopping the worker must not cut that
    # stop short: the running item finishes within the grace period, the rest go back
    manager.enqueue_batch(jobs.entities(1, 0.0), procs_app.job, queue_name="jobs")
    manager.enqueue_batch(jobs.entities(3, 2.0)[1:], procs_app.job, queue_name="jobs")
    lone = supervise("--concurrency", "2", "--max-jobs", "1")
    wait_until(lambda: "stopping (running items finish" in lone.log.read_text(), timeout=30)
    lone.proc.send_signal(signal.SIGTERM)
    assert lone.exit_code(30) == 0, lone.log.read_text()
    done = numbers(raw_redis, jobs.done)
    assert {0, 1} <= set(done), lone.log.read_text()  # 1 was running: it finished
    assert sorted(waiting(raw_redis, config) + done) == [0, 1, 2]
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_a_lone_worker_above_max_memory_stops_gracefully_with_exit_0(
    supervise: Callable[..., Supervised],
    manager: QueueManager,
    config: QueueConfig,
    raw_redis: redis.Redis,
    jobs: Jobs,
) -> None:
    # A 1 MiB limit is below any Python process: the worker stops after its first jobs
    manager.enqueue_batch(jobs.entities(10, 0.3), procs_app.job, queue_name="jobs")
    lone = supervise("--max-memory", "1", "--concurrency", "1")
    assert lone.exit_code(30) == 0, lone.log.read_text()
    log = lone.log.read_text()
    assert "is above --max-memory 1 MiB; stopping" in log, log
    done = numbers(raw_redis, jobs.done)
    assert 1 <= len(done) < 10
    assert sorted(waiting(raw_redis, config) + done) == list(range(10))
    assert raw_redis.hlen(config.keys.inflight) == 0


def test_children_stop_on_their_own_when_the_supervisor_is_killed(
    supervise: Callable[..., Supervised], config: QueueConfig, raw_redis: redis.Redis
) -> None:
    sup = supervise("--processes", "2")
    wait_until(lambda: len(sup.children()) == 2, timeout=30, message="two children up")
    pids = sup.child_pids()
    sup.proc.kill()  # SIGKILL: the children get no signal
    sup.proc.wait()
    wait_until(lambda: not any(_is_our_child(p) for p in pids), timeout=15, message="children")
    assert sup.children() == []  # each unregistered on its way out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "--processes"),
        (["--processes", "many"], "--processes"),
        (["--processes", "2", "--supervised-by", "vm:1:abcd"], "supervised worker"),
        (["--max-jobs", "0"], "--max-jobs"),
    ],
)
def test_bad_supervisor_options_are_usage_errors(
    redis_url: str, key_prefix: str, args: list[str], message: str
) -> None:
    result = cli_runner().invoke(
        cli, ["--url", redis_url, "--prefix", key_prefix, "worker", APP, *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_readme_run_workers_example(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Several processes: `--processes`", examples_url, tmp_path)
    assert stdout.strip() == "done: 40"
