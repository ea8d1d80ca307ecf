#!/usr/bin/env python
"""queue_system beside its peers: the same job, the same local server, one run.

    ./scripts/bench-peers                 # sets up .venv-bench (the peers), then runs this
    ./scripts/bench-peers --quick         # smoke run
    ./scripts/bench-peers --rounds 3 --json

Queues compared: queue_system, rq, arq, saq, dramatiq, taskiq (list and stream brokers), huey,
and ``raw``: a redis-py LPUSH / BRPOP loop with no bookkeeping at all (lossy: an item popped by a
worker that dies is gone). Each queue runs in a child process of its own (``--peer NAME``), which:

1. times ``--enqueue`` one-by-one enqueues, alternating chunks of 250 with raw ``LPUSH`` of an
   item of the same size (the queue's own ratio to raw);
2. times a batch enqueue of 100 items x 20, where the queue has a batch API;
3. tops the queue up to ``--drain`` jobs, starts ONE worker process of that queue (its own CLI,
   its usual concurrency: 20 jobs at once for async workers, 8 threads for thread workers) and
   times the drain from the first job's run to the last one's;
4. with that worker idle, measures ``--latency`` enqueue -> job-start samples (2 ms apart).

Rounds (``--rounds``) run the queues in alternating order; the report shows each figure's median
over rounds and its ratio to raw of the same round. Every key is deleted (FLUSHDB of the run's
own throwaway server). Workers are ended by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = [
    "raw",
    "queue_system",
    "rq",
    "arq",
    "saq",
    "dramatiq",
    "taskiq-list",
    "taskiq-stream",
    "huey",
]
RAW_LIST = "peerbench:raw"
BASELINE_LIST = "peerbench:baseline"  # raw LPUSHes alternated with each queue's enqueues
ENQUEUE_CHUNK = 250
BATCH = 100
BATCHES = 20
LATENCY_GAP_S = 0.002
LATENCY_WARMUP = 10
WORKER_TIMEOUT_S = 300.0
POLL_S = 0.002


@dataclass(frozen=True, kw_only=True)
class Sizes:
    enqueue: int
    drain: int
    latency: int


FULL = Sizes(enqueue=2000, drain=20_000, latency=200)
QUICK = Sizes(enqueue=500, drain=2000, latency=40)


# --- the producer side of each queue (runs inside the --peer child) ----------------------------


class Producer:
    """Enqueue jobs the way a user of one queue would; async APIs run on one private loop."""

    batch_api = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def enqueue(self, seq: int, mode: str) -> None:
        raise NotImplementedError

    def enqueue_many(self, seqs: range, mode: str) -> None:
        for seq in seqs:
            self.enqueue(seq, mode)

    def enqueue_batch(self, seqs: range, mode: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.loop.close()


class RawProducer(Producer):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.r = redis.Redis.from_url(url)

    def enqueue(self, seq: int, mode: str) -> None:
        self.r.lpush(RAW_LIST, json.dumps({"seq": seq, "mode": mode}))


class QueueSystemProducer(Producer):
    batch_api = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import peer_jobs

        from queue_system import QueueManager

        self.job = peer_jobs.qs_job
        self.manager = QueueManager(peer_jobs.qs_config)

    def enqueue(self, seq: int, mode: str) -> None:
        self.manager.enqueue({"seq": seq, "mode": mode}, self.job, queue_name="bench")

    def enqueue_batch(self, seqs: range, mode: str) -> None:
        entities = [{"seq": seq, "mode": mode} for seq in seqs]
        self.manager.enqueue_batch(entities, self.job, queue_name="bench")


class RqProducer(Producer):
    batch_api = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import peer_jobs
        from rq import Queue

        self.job = peer_jobs.rq_job
        self.queue = Queue("bench", connection=redis.Redis.from_url(url))

    def enqueue(self, seq: int, mode: str) -> None:
        self.queue.enqueue(self.job, seq, mode)

    def enqueue_batch(self, seqs: range, mode: str) -> None:
        from rq import Queue

        self.queue.enqueue_many([Queue.prepare_data(self.job, (seq, mode)) for seq in seqs])


class ArqProducer(Producer):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        from arq import create_pool
        from arq.connections import RedisSettings

        self.pool = self.run(create_pool(RedisSettings.from_dsn(url)))

    def enqueue(self, seq: int, mode: str) -> None:
        self.run(self.pool.enqueue_job("arq_job", seq, mode))

    def enqueue_many(self, seqs: range, mode: str) -> None:
        async def many() -> None:
            for seq in seqs:
                await self.pool.enqueue_job("arq_job", seq, mode)

        self.run(many())

    def close(self) -> None:
        self.run(self.pool.aclose())
        super().close()


class SaqProducer(Producer):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        from saq import Queue

        self.queue = Queue.from_url(url)
        self.run(self.queue.connect())

    def enqueue(self, seq: int, mode: str) -> None:
        self.run(self.queue.enqueue("saq_job", seq=seq, mode=mode))

    def enqueue_many(self, seqs: range, mode: str) -> None:
        async def many() -> None:
            for seq in seqs:
                await self.queue.enqueue("saq_job", seq=seq, mode=mode)

        self.run(many())

    def close(self) -> None:
        self.run(self.queue.disconnect())
        super().close()


class DramatiqProducer(Producer):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        import peer_jobs

        self.actor = peer_jobs.dramatiq_job

    def enqueue(self, seq: int, mode: str) -> None:
        self.actor.send(seq, mode)


class TaskiqProducer(Producer):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        import peer_jobs

        self.broker = peer_jobs.taskiq_broker
        self.task = peer_jobs.taskiq_job
        self.run(self.broker.startup())

    def enqueue(self, seq: int, mode: str) -> None:
        self.run(self.task.kiq(seq, mode))

    def enqueue_many(self, seqs: range, mode: str) -> None:
        async def many() -> None:
            for seq in seqs:
                await self.task.kiq(seq, mode)

        self.run(many())

    def close(self) -> None:
        self.run(self.broker.shutdown())
        super().close()


class HueyProducer(Producer):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        import peer_jobs

        self.task = peer_jobs.huey_job

    def enqueue(self, seq: int, mode: str) -> None:
        self.task(seq, mode)


PRODUCERS: dict[str, Callable[[str], Producer]] = {
    "raw": RawProducer,
    "queue_system": QueueSystemProducer,
    "rq": RqProducer,
    "arq": ArqProducer,
    "saq": SaqProducer,
    "dramatiq": DramatiqProducer,
    "taskiq-list": TaskiqProducer,
    "taskiq-stream": TaskiqProducer,
    "huey": HueyProducer,
}


def worker_argv(peer: str, url: str) -> list[str]:
    """How a user starts one worker process of ``peer`` (its own CLI)."""
    bin_dir = Path(sys.executable).parent
    concurrency, threads = "20", "8"
    commands = {
        "raw": [sys.executable, str(HERE / "peers.py"), "--raw-worker", "--url", url],
        "queue_system": [
            *(sys.executable, "-m", "queue_system", "worker", "peer_jobs:qs_config"),
            *("--queues", "bench", "--concurrency", concurrency, "--log-level", "warning"),
        ],
        "rq": [
            str(bin_dir / "rq"),
            "worker",
            "-q",
            "--url",
            url,
            "-w",
            "rq.worker.SimpleWorker",
            "bench",
        ],
        "arq": [str(bin_dir / "arq"), "peer_jobs.ArqWorker"],
        "saq": [str(bin_dir / "saq"), "peer_jobs.saq_settings", "--workers", "1"],
        "dramatiq": [
            str(bin_dir / "dramatiq"),
            "peer_jobs",
            "--processes",
            "1",
            "--threads",
            threads,
        ],
        "taskiq-list": [
            *(str(bin_dir / "taskiq"), "worker", "peer_jobs:taskiq_broker"),
            *("--workers", "1", "--max-async-tasks", concurrency),
        ],
        "huey": [str(bin_dir / "huey_consumer"), "peer_jobs.huey", "-w", threads, "-k", "thread"],
    }
    commands["taskiq-stream"] = commands["taskiq-list"]
    return commands[peer]


def child_env(peer: str, url: str) -> dict[str, str]:
    path = os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "QS_BENCH_PEER": peer,
        "QS_BENCH_URL": url,
        "REDIS_URL": url,
        "PYTHONPATH": path,
    }


@contextlib.contextmanager
def worker_process(peer: str, url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One worker process of ``peer``; stopped (SIGINT, then SIGKILL) by its PID afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            worker_argv(peer, url),
            cwd=HERE,
            env=child_env(peer, url),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def peer_child(peer: str, url: str, sizes: Sizes, log: Path) -> dict[str, Any]:
    """Everything measured for one queue in one round (runs in its own process)."""
    import peer_jobs

    r = redis.Redis.from_url(url)
    r.flushdb()
    producer = PRODUCERS[peer](url)
    out: dict[str, Any] = {"peer": peer}
    try:
        payload = json.dumps({"seq": 0, "mode": "drain"})
        lib_s = raw_s = 0.0
        seq = 0
        while seq < sizes.enqueue:
            chunk = range(seq, min(seq + ENQUEUE_CHUNK, sizes.enqueue))
            start = time.perf_counter()
            producer.enqueue_many(chunk, "drain")
            lib_s += time.perf_counter() - start
            start = time.perf_counter()
            for _ in chunk:
                r.lpush(BASELINE_LIST, payload)
            raw_s += time.perf_counter() - start
            seq = chunk.stop
        r.delete(BASELINE_LIST)
        out["enqueue_per_s"] = sizes.enqueue / lib_s
        out["raw_lpush_per_s"] = sizes.enqueue / raw_s
        if producer.batch_api:
            start = time.perf_counter()
            for _ in range(BATCHES):
                producer.enqueue_batch(range(seq, seq + BATCH), "drain")
                seq += BATCH
            out["batch_per_s"] = BATCH * BATCHES / (time.perf_counter() - start)
        if seq < sizes.drain:
            producer.enqueue_many(range(seq, sizes.drain), "drain")
            seq = sizes.drain
        total = seq
        with worker_process(peer, url, log) as proc:
            out["drain_per_s"] = timed_drain(r, proc, total)
            out["latency_ms"] = latency_samples(r, producer, sizes.latency, seq)
    finally:
        producer.close()
        r.flushdb()
    del peer_jobs
    return out


def timed_drain(r: redis.Redis, proc: subprocess.Popen[bytes], total: int) -> float:
    """Jobs per second from the first job's run to the last one's."""
    from peer_jobs import DONE

    deadline = time.monotonic() + WORKER_TIMEOUT_S
    first_at: float | None = None
    first_count = 0
    while True:
        done = int(r.get(DONE) or 0)
        now = time.perf_counter()
        if first_at is None and done:
            first_at, first_count = now, done
        if done >= total:
            assert first_at is not None
            return (total - first_count) / max(now - first_at, 1e-9)
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited ({proc.returncode}) after {done}/{total} jobs")
        if time.monotonic() > deadline:
            raise RuntimeError(f"drain timed out after {done}/{total} jobs")
        time.sleep(POLL_S)


def latency_samples(r: redis.Redis, producer: Producer, n: int, seq: int) -> list[float]:
    """Enqueue -> job start, in ms, with the worker idle before each sample."""
    from peer_jobs import STARTED

    samples: list[float] = []
    for i in range(LATENCY_WARMUP + n):
        seq += 1
        sent = time.time()
        producer.enqueue(seq, "latency")
        answer = r.blpop([STARTED], timeout=30)
        if answer is None:
            raise RuntimeError(f"latency job {seq} never started")
        got, started = answer[1].decode().split()
        if int(got) != seq:
            raise RuntimeError(f"latency reply {got}, expected {seq}")
        if i >= LATENCY_WARMUP:
            samples.append((float(started) - sent) * 1000)
        time.sleep(LATENCY_GAP_S)
    return samples


def raw_worker(url: str) -> None:
    """The ``raw`` queue's worker: BRPOP an item, run the job body; no lease, no record."""
    import peer_jobs

    r = redis.Redis.from_url(url)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    while not stop:
        answer = r.brpop([RAW_LIST], timeout=0.2)
        if answer is not None:
            item = json.loads(answer[1])
            peer_jobs.body(item["seq"], item["mode"])


# --- the parent: rounds, medians, report -------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run_round(peers: list[str], url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each queue's child once, in ``peers`` order; a failed child is reported, not fatal."""
    results = []
    for peer in peers:
        argv = [sys.executable, str(HERE / "peers.py"), "--peer", peer, "--url", url]
        argv += ["--quick"] if args.quick else []
        proc = subprocess.run(
            argv, cwd=HERE, env=child_env(peer, url), capture_output=True, text=True, timeout=900
        )
        if proc.returncode != 0:
            print(
                f"!! {peer} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}",
                file=sys.stderr,
            )
            results.append({"peer": peer, "error": proc.stderr.strip()[-2000:]})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"   {peer}: done", file=sys.stderr, flush=True)
    return results


FIGURES = [
    ("enqueue 1x1 /s", lambda r: r.get("enqueue_per_s")),
    (
        "vs LPUSH",
        lambda r: r["enqueue_per_s"] / r["raw_lpush_per_s"] if "enqueue_per_s" in r else None,
    ),
    ("batch /s", lambda r: r.get("batch_per_s")),
    ("drain /s", lambda r: r.get("drain_per_s")),
    ("latency p50 ms", lambda r: percentile(r["latency_ms"], 50) if "latency_ms" in r else None),
    ("latency p99 ms", lambda r: percentile(r["latency_ms"], 99) if "latency_ms" in r else None),
]


def summarise(
    rounds: list[list[dict[str, Any]]], peers: list[str]
) -> dict[str, dict[str, float | None]]:
    """Median over rounds of each figure, plus drain and latency ratios to raw of the same round."""
    table: dict[str, dict[str, float | None]] = {}
    for peer in peers:
        row: dict[str, float | None] = {}
        per_round = [next(r for r in rnd if r["peer"] == peer) for rnd in rounds]
        raws = [next(r for r in rnd if r["peer"] == "raw") for rnd in rounds]
        for name, get in FIGURES:
            values = [v for v in (get(r) for r in per_round if "error" not in r) if v is not None]
            row[name] = statistics.median(values) if values else None
        drain_ratios = [
            r["drain_per_s"] / raw["drain_per_s"]
            for r, raw in zip(per_round, raws, strict=True)
            if "drain_per_s" in r and "drain_per_s" in raw
        ]
        p50_ratios = [
            percentile(r["latency_ms"], 50) / percentile(raw["latency_ms"], 50)
            for r, raw in zip(per_round, raws, strict=True)
            if "latency_ms" in r and "latency_ms" in raw
        ]
        row["drain vs raw"] = statistics.median(drain_ratios) if drain_ratios else None
        row["p50 vs raw"] = statistics.median(p50_ratios) if p50_ratios else None
        table[peer] = row
    return table


def render(table: dict[str, dict[str, float | None]]) -> str:
    columns = [name for name, _ in FIGURES] + ["drain vs raw", "p50 vs raw"]
    head = ["queue", *columns]

    def cell(name: str, value: float | None) -> str:
        if value is None:
            return "-"
        if "ms" in name or "vs" in name:
            return f"{value:.2f}" + ("x" if "vs" in name else "")
        return f"{value:,.0f}"

    body = [[peer, *(cell(c, row[c]) for c in columns)] for peer, row in table.items()]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [head, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def versions(peers: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = {
        "queue_system": "queue_system",
        "rq": "rq",
        "arq": "arq",
        "saq": "saq",
        "dramatiq": "dramatiq",
        "taskiq-list": "taskiq-redis",
        "taskiq-stream": "taskiq-redis",
        "huey": "huey",
    }
    found = {"redis-py": version("redis")}
    for peer in peers:
        if peer in names:
            with contextlib.suppress(PackageNotFoundError):
                found[names[peer]] = version(names[peer])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", help="comma-separated queues (raw is always included)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    parser.add_argument("--url", help="an existing server (default: a throwaway local one)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.raw_worker:
        raw_worker(args.url)
        return 0
    if args.peer:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"peerbench-{args.peer}-{os.getpid()}.log"
        result = peer_child(args.peer, args.url, sizes, log)
        print(json.dumps(result))
        return 0
    peers = PEERS if not args.only else ["raw", *[p for p in args.only.split(",") if p != "raw"]]
    from queue_system.engine.embedded_server import EmbeddedRedis

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(EmbeddedRedis()).url
        info = redis.Redis.from_url(url).info("server")
        server = (
            f"valkey {info['valkey_version']}"
            if "valkey_version" in info
            else f"redis {info['redis_version']}"
        )
        print(f"server: {server}; sizes: {sizes}; rounds: {args.rounds}", file=sys.stderr)
        rounds = []
        for n in range(args.rounds):
            order = peers if n % 2 == 0 else [peers[0], *reversed(peers[1:])]
            print(f"round {n + 1}: {', '.join(order)}", file=sys.stderr, flush=True)
            rounds.append(run_round(order, url, args))
    table = summarise(rounds, peers)
    print(f"server: {server}; {sizes}; rounds: {args.rounds}; versions: {versions(peers)}")
    print(render(table))
    if args.json:
        print(json.dumps({"rounds": rounds, "table": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
