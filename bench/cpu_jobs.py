"""The CPU-bound job of ``bench/processes.py``, and the worker application that runs it.

Workers are the product's CLI, run in ``bench/``::

    python -m queue_system worker cpu_jobs:config --processes 2 --concurrency 1 --burst

The config reads the server from ``REDIS_URL``. Each run records its start and end (epoch
seconds) and the CPU time its thread got in the list named in its entity, so the work span
is measured from the jobs themselves, without the processes' start-up.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import redis

from queue_system import QueueConfig

PREFIX = "bench_cpu:"  # every key of this benchmark starts with it

config = QueueConfig(redis_url=os.environ.get("REDIS_URL"), queue_prefix=PREFIX)


def burn(data: dict[str, Any]) -> None:
    """Pure-Python arithmetic: holds the GIL for the whole run (``data["units"]`` loops)."""
    started, cpu = time.time(), time.thread_time()
    total = 0
    for i in range(data["units"]):
        total += i * i % 7
    cpu_s = time.thread_time() - cpu  # CPU this job got (less than its span on a busy machine)
    _client(data["url"]).rpush(data["spans_key"], f"{started} {time.time()} {cpu_s}")


@functools.cache
def _client(url: str) -> redis.Redis:
    """One connection pool per worker process (a new connection per job would be I/O that
    threads overlap, blurring the CPU-bound comparison)."""
    return redis.Redis.from_url(url)


config.register_callback(burn, name="bench:burn")
