"""``def`` vs ``async def`` no-op drain: one in-process burst worker per round, same server,
rounds interleaved, median of three; figures in jobs per second of the worker process's CPU
time (less sensitive than wall time to other load on a shared machine).

    .venv/bin/python bench/def_vs_async.py [jobs per round]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis

ROUNDS = 3
FILL_CHUNK = 500


async def async_noop(entity: Any) -> None:
    return None


def def_noop(entity: Any) -> None:
    return None


def drain(url: str, processor: Callable[..., Any], jobs: int, max_workers: int) -> float:
    """Jobs per CPU second of this process for one burst drain of ``jobs`` no-op items."""
    config = QueueConfig(redis_url=url, queue_prefix=f"bench{time.monotonic_ns()}:")
    config.register_callback(processor, name=processor.__name__)
    manager = QueueManager(config)
    for _ in range(0, jobs, FILL_CHUNK):
        manager.enqueue_batch([{"i": i} for i in range(FILL_CHUNK)], processor, queue_name="q")
    worker = QueueWorker(config, max_workers=max_workers, burst=True)
    started = time.process_time()
    asyncio.run(worker.run())
    return jobs / (time.process_time() - started)


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with EmbeddedRedis() as server:
        for max_workers in (10, 50):
            runs: dict[str, list[float]] = {"async": [], "def": []}
            for _ in range(ROUNDS):
                runs["async"].append(drain(server.url, async_noop, jobs, max_workers))
                runs["def"].append(drain(server.url, def_noop, jobs, max_workers))
            a, d = (statistics.median(runs[k]) for k in ("async", "def"))
            print(
                f"max_workers={max_workers}: jobs per worker CPU second: "
                f"async {a:.0f}, def {d:.0f}, def/async {d / a:.2f}"
            )


if __name__ == "__main__":
    main()
