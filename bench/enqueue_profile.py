#!/usr/bin/env python
"""Where one-by-one enqueue spends its time (issue 16), each figure beside raw LPUSH.

    .venv/bin/python bench/enqueue_profile.py            # own valkey-server, ~15 s
    .venv/bin/python bench/enqueue_profile.py --url redis://127.0.0.1:6379/0 --rounds 5

Prints, as medians (and minima) over interleaved rounds:

* round trips, wall and client CPU per call: ``LPUSH`` of an item of the same size, ``EVALSHA``
  of ``return 1`` without and with enqueue's keys and arguments, ``EVALSHA`` of enqueue.lua with
  a prebuilt plan, and ``QueueManager.enqueue``;
* the server's time per call (``INFO commandstats``) of enqueue.lua and of each command it runs;
* the library's own Python per enqueue, the script call replaced by a stub (no I/O).

Only keys under ``bench:`` are written (and deleted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import QUEUE, clear, make_config, make_entity, noop
from queue_system import QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.producer.plan import EnqueuePlan, plan_enqueue


def round_trips(url: str, n: int, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    config = make_config(url)
    manager = QueueManager(config)
    client = config.redis_client
    entities = [make_entity(i) for i in range(n)]
    manager.enqueue(entities[0], noop, queue_name=QUEUE)
    payload = client.lindex(config.get_queue_key(QUEUE), 0)
    clear(client)
    enqueue_sha = manager._scripts.enqueue.sha
    return_1 = client.script_load("return 1")

    def plans() -> list[EnqueuePlan]:
        return [plan_enqueue(config, [entity], noop, queue_name=QUEUE) for entity in entities]

    sides: dict[str, Callable[[int, EnqueuePlan], Any]] = {
        "LPUSH": lambda i, p: client.lpush(f"{QUEUE}:raw", payload),
        "EVALSHA 'return 1', no arguments": lambda i, p: client.evalsha(return_1, 0),
        "EVALSHA 'return 1', enqueue's arguments": lambda i, p: client.evalsha(
            return_1, len(p.keys), *p.keys, *p.args
        ),
        "EVALSHA enqueue.lua, prebuilt plan": lambda i, p: client.evalsha(
            enqueue_sha, len(p.keys), *p.keys, *p.args
        ),
        "QueueManager.enqueue": lambda i, p: manager.enqueue(entities[i], noop, queue_name=QUEUE),
    }
    spent: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sides}
    for _ in range(rounds):
        built = plans()
        for name, side in sides.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(n):
                side(i, built[i])
            spent[name][0].append((time.perf_counter() - wall) / n * 1e6)
            spent[name][1].append((time.process_time() - cpu) / n * 1e6)
            clear(client)
    return spent


def server_times(url: str, n: int) -> dict[str, tuple[int, float]]:
    config = make_config(url)
    manager = QueueManager(config)
    raw = redis.Redis.from_url(url)
    entities = [make_entity(i) for i in range(n)]
    manager.enqueue(entities[0], noop, queue_name=QUEUE)
    clear(raw)
    raw.config_resetstat()
    for entity in entities:
        manager.enqueue(entity, noop, queue_name=QUEUE)
    stats = raw.info("commandstats")
    clear(raw)
    return {
        name.removeprefix("cmdstat_"): (int(row["calls"]), float(row["usec_per_call"]))
        for name, row in stats.items()
        if int(row["calls"]) >= n
    }


class _Stub:
    def __call__(self, keys: Any = None, args: Any = None) -> list[bytes]:
        return [b"", b""]


def python_only(number: int = 20_000) -> float:
    manager = QueueManager(make_config("redis://127.0.0.1:1/0"))
    manager._scripts = type("Scripts", (), {"enqueue": _Stub()})()  # type: ignore[assignment]
    entity = make_entity(1)
    best = min(
        timeit.repeat(
            lambda: manager.enqueue(entity, noop, queue_name=QUEUE), number=number, repeat=5
        )
    )
    return best / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="use this server instead of starting one")
    parser.add_argument("-n", type=int, default=1000, help="calls per side and round")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    def run(url: str) -> None:
        spent = round_trips(url, args.n, args.rounds)
        base = statistics.median(spent["LPUSH"][0])
        print(f"round trips ({args.rounds} interleaved rounds of {args.n}), microseconds per call")
        print(f"{'':42} {'wall p50':>9} {'min':>7} {'cpu p50':>8} {'min':>7} {'LPUSH/this':>11}")
        for name, (wall, cpu) in spent.items():
            print(
                f"{name:42} {statistics.median(wall):9.1f} {min(wall):7.1f} "
                f"{statistics.median(cpu):8.1f} {min(cpu):7.1f} "
                f"{base / statistics.median(wall):10.2f}x"
            )
        print(f"\nserver time per call, {args.n} enqueues (INFO commandstats)")
        for name, (calls, usec) in sorted(server_times(url, args.n).items()):
            print(f"  {name:12} calls {calls:6}  {usec:6.2f} us/call")
        print(f"\nlibrary Python per enqueue (script call stubbed): {python_only():.1f} us")

    if args.url:
        run(args.url)
    else:
        with EmbeddedRedis() as local:
            run(local.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
