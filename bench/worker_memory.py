"""Worker memory over a long drain: RSS of one in-process worker while it drains N no-op jobs
(async and def), sampled every second; the growth after the first 10 % is what leaks would
show (target: under 5 MB over 100,000 jobs).

    .venv/bin/python bench/worker_memory.py [jobs]
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis

FILL_CHUNK = 1000
PAGE = os.sysconf("SC_PAGE_SIZE")


async def async_noop(entity: Any) -> None:
    return None


def def_noop(entity: Any) -> None:
    return None


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 1e6


def drain(url: str, processor: Any, jobs: int) -> list[tuple[int, float]]:
    """(jobs done, RSS MB) samples over one burst drain of ``jobs`` items."""
    config = QueueConfig(redis_url=url, queue_prefix=f"mem{time.monotonic_ns()}:")
    config.register_callback(processor, name=processor.__name__)
    manager = QueueManager(config)
    for _ in range(0, jobs, FILL_CHUNK):
        manager.enqueue_batch([{"i": i} for i in range(FILL_CHUNK)], processor, queue_name="q")
    samples: list[tuple[int, float]] = []
    done = threading.Event()
    reader = redis.Redis.from_url(url)

    def sample() -> None:
        while not done.wait(1.0):
            left = int(reader.llen(config.keys.queue("q", "normal")))
            samples.append((jobs - left, rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    asyncio.run(QueueWorker(config, max_workers=20, burst=True).run())
    done.set()
    sampler.join()
    samples.append((jobs, rss_mb()))
    return samples


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with EmbeddedRedis() as server:
        for processor in (async_noop, def_noop):
            samples = drain(server.url, processor, jobs)
            after_warmup = next((mb for n, mb in samples if n >= jobs // 10), samples[0][1])
            peak = max(mb for _, mb in samples)
            print(
                f"{processor.__name__}: {jobs} jobs, RSS after 10 % {after_warmup:.1f} MB, "
                f"at the end {samples[-1][1]:.1f} MB, peak {peak:.1f} MB, "
                f"growth {samples[-1][1] - after_warmup:+.1f} MB"
            )


if __name__ == "__main__":
    main()
