"""The CPU-bound job of ``bench/processes.py``, and the worker application that runs it.

Workers are the product's CLI, run in ``bench/``::

    python -m queue_system worker cpu_jobs:config --processes 2 --concurrency 1 --burst

The config reads the server from ``REDIS_URL``. Each run records its start and end (epoch
seconds) in the lists named in its entity, so the work span is measured from the jobs
themselves, without the processes' start-up.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from queue_system import QueueConfig

PREFIX = "bench_cpu:"  # every key of this benchmark starts with it

config = QueueConfig(redis_url=os.environ.get("REDIS_URL"), queue_prefix=PREFIX)


def burn(data: dict[str, Any]) -> None:
    """Pure-Python arithmetic: holds the GIL for the whole run (``data["units"]`` loops)."""
    started = time.time()
    total = 0
    for i in range(data["units"]):
        total += i * i % 7
    client = redis.Redis.from_url(data["url"])
    try:
        client.rpush(data["spans_key"], f"{started} {time.time()}")
    finally:
        client.close()


config.register_callback(burn, name="bench:burn")
