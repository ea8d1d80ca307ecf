#!/usr/bin/env python
"""Drain of a CPU-bound sync job with ``--processes 2`` against ``--processes 1`` (issue 16).

::

    .venv/bin/python bench/processes.py            # 3 interleaved rounds (~45 s)
    .venv/bin/python bench/processes.py --quick    # 1 round (~10 s)
    .venv/bin/python bench/processes.py --url redis://127.0.0.1:6379/0 --json

Each side enqueues the same jobs (``bench/cpu_jobs.py``: ~20 ms of pure-Python arithmetic
each, which holds the GIL), then runs ``queue-system worker cpu_jobs:config --burst
--concurrency 1 --processes N`` until the queue is empty. The sides alternate round by round,
so both see the same noise, and each figure is the median of its rounds. Two figures per side:
the *work span* (first job's start to last job's end, read from the jobs' own records) and the
*wall* time of the whole command (with the processes' start-up); *CPUs used* is the jobs'
summed CPU time over the span (2.0: both cores worked on jobs the whole time). A third side,
one process with ``--concurrency 2``, shows that threads do not help CPU-bound sync jobs (the
GIL); a fourth runs them in one worker with ``--executor process`` (two child processes).
Target: span(1 process) / span(2 processes) >= 1.6 on two cores. Only keys under
``bench_cpu:`` are written (and deleted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from queue_system import QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis

HERE = Path(__file__).resolve().parent
SPANS = "bench_cpu:spans"
TARGET = 1.6
SIDES = {  # name -> options of `queue-system worker`
    "1 process": ("--processes=1", "--concurrency=1"),
    "2 processes": ("--processes=2", "--concurrency=1"),
    "1 process, 2 threads": ("--processes=1", "--concurrency=2"),
    "1 worker, executor=process x2": ("--concurrency=2", "--executor=process"),
}


def calibrate(seconds: float) -> int:
    """Loop count of ``burn`` that takes about ``seconds`` on an idle core here (the fastest
    of several short timings: on a busy machine a single timing includes waiting for a CPU)."""
    units, best = 50_000, float("inf")
    for _ in range(10):
        started = time.perf_counter()
        total = 0
        for i in range(units):
            total += i * i % 7
        best = min(best, time.perf_counter() - started)
    return max(1000, int(units * seconds / best))


def drain(url: str, options: tuple[str, ...], jobs: int, units: int) -> dict[str, float]:
    """Enqueue ``jobs`` burns, drain them with a burst worker run with ``options``."""
    os.environ["REDIS_URL"] = url  # cpu_jobs.config reads it on import (here and in children)
    sys.path.insert(0, str(HERE))
    import cpu_jobs

    raw = redis.Redis.from_url(url)
    for key in raw.scan_iter("bench_cpu:*"):
        raw.delete(key)
    QueueManager(cpu_jobs.config).enqueue_batch(
        [{"url": url, "units": units, "spans_key": SPANS, "n": n} for n in range(jobs)],
        cpu_jobs.burn,
        queue_name="cpu",
    )
    argv = [sys.executable, "-m", "queue_system", "worker", "cpu_jobs:config", "--burst"]
    argv += [*options, "--log-level=warning"]
    env = {**os.environ, "REDIS_URL": url}
    began = time.perf_counter()
    subprocess.run(argv, cwd=HERE, env=env, check=True, timeout=600)
    wall = time.perf_counter() - began
    runs = [tuple(map(float, s.split())) for s in raw.lrange(SPANS, 0, -1)]
    if len(runs) != jobs:
        raise RuntimeError(f"{len(runs)} of {jobs} jobs ran")
    span = max(end for _, end, _ in runs) - min(start for start, _, _ in runs)
    busy = sum(cpu for _, _, cpu in runs)
    for key in raw.scan_iter("bench_cpu:*"):
        raw.delete(key)
    raw.close()
    # CPUs the jobs really used on average: 2 means two cores worked side by side; less
    # means the GIL (threads) or other work on the machine took the rest.
    return {"span_s": span, "wall_s": wall, "cpus_used": busy / span}


def run(url: str, rounds: int, jobs: int, job_s: float) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    units = calibrate(job_s)
    results: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for _ in range(rounds):
        for side, options in SIDES.items():
            results[side].append(drain(url, options, jobs, units))
    medians = {
        side: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for side, runs in results.items()
    }
    one, two = medians["1 process"], medians["2 processes"]
    ratio = one["span_s"] / two["span_s"]
    return {
        "jobs": jobs,
        "job_ms": round(job_s * 1000),
        "rounds": rounds,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # Other work on the machine shrinks the speed-up: the 1-minute load, before and after.
        "load_average": [load_before, round(os.getloadavg()[0], 2)],
        "sides": medians,
        "speedup_span": round(ratio, 2),
        "speedup_wall": round(one["wall_s"] / two["wall_s"], 2),
        "target": TARGET,
        "result": "PASS" if ratio >= TARGET else "FAIL",
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"drain of {result['jobs']} CPU-bound sync jobs (~{result['job_ms']} ms each), "
        f"median of {result['rounds']} interleaved rounds, {result['cpus']} CPUs, "
        f"load average {result['load_average'][0]} before, {result['load_average'][1]} after"
    )
    print(f"{'side':<31}{'work span':>12}{'jobs/s':>10}{'wall':>10}{'CPUs used':>11}")
    for side, m in result["sides"].items():
        rate = result["jobs"] / m["span_s"]
        print(
            f"{side:<31}{m['span_s']:>11.2f}s{rate:>10.1f}{m['wall_s']:>9.2f}s"
            f"{m['cpus_used']:>11.2f}"
        )
    print(
        f"speed-up, 2 processes / 1: {result['speedup_span']}x work span "
        f"({result['speedup_wall']}x wall); target >= {result['target']}x: {result['result']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of fewer jobs")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--url", help="use this server instead of starting one")
    args = parser.parse_args()
    rounds, jobs = (1, 60) if args.quick else (3, 200)
    if args.url:
        result = run(args.url, rounds, jobs, 0.02)
    else:
        with EmbeddedRedis() as server:
            result = run(server.url, rounds, jobs, 0.02)
    print(json.dumps(result, indent=2)) if args.json else report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
