"""The one job every queue runs in ``bench/peers.py``, declared the way each peer wants it.

Each worker process imports this module with ``QS_BENCH_PEER`` naming its queue, so it imports
only that library. The body is the same everywhere: a drain job counts itself (``INCR``), a
latency job pushes the time it started (``RPUSH``), both on a plain redis-py client of its own.
Async frameworks get an ``async def`` (their fast path) that calls the same sync body.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

URL = os.environ["QS_BENCH_URL"]
PEER = os.environ["QS_BENCH_PEER"]
QUEUE = "bench"
DONE = "peerbench:done"  # drain jobs: how many ran
STARTED = "peerbench:started"  # latency jobs: "<seq> <time they started>"
ASYNC_CONCURRENCY = 20  # jobs at once in one async worker process
THREADS = 8  # threads in one thread-based worker process

_counter = redis.Redis.from_url(URL)


def body(seq: int, mode: str) -> None:
    """The job: count a drain job, or report when a latency job started."""
    if mode == "latency":
        _counter.rpush(STARTED, f"{seq} {time.time()!r}")
    else:
        _counter.incr(DONE)


if PEER == "queue_system":
    from queue_system import QueueConfig

    qs_config = QueueConfig(redis_url=URL)

    @qs_config.processor(name="peerbench:job")
    async def qs_job(data: dict[str, Any]) -> None:
        body(data["seq"], data["mode"])

elif PEER == "rq":

    def rq_job(seq: int, mode: str) -> None:
        body(seq, mode)

elif PEER == "arq":
    from arq.connections import RedisSettings

    async def arq_job(ctx: dict[str, Any], seq: int, mode: str) -> None:
        body(seq, mode)

    class ArqWorker:
        functions = [arq_job]  # arq reads its settings from class attributes
        redis_settings = RedisSettings.from_dsn(URL)
        max_jobs = ASYNC_CONCURRENCY

elif PEER == "saq":
    from saq import Queue as SaqQueue

    async def saq_job(ctx: dict[str, Any], *, seq: int, mode: str) -> None:
        body(seq, mode)

    saq_settings = {
        "queue": SaqQueue.from_url(URL),
        "functions": [saq_job],
        "concurrency": ASYNC_CONCURRENCY,
    }

elif PEER == "dramatiq":
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq.set_broker(RedisBroker(url=URL))

    @dramatiq.actor(queue_name=QUEUE)
    def dramatiq_job(seq: int, mode: str) -> None:
        body(seq, mode)

elif PEER in ("taskiq-list", "taskiq-stream"):
    from taskiq_redis import ListQueueBroker, RedisStreamBroker

    taskiq_broker = ListQueueBroker(URL) if PEER == "taskiq-list" else RedisStreamBroker(URL)

    @taskiq_broker.task(task_name="peerbench_job")
    async def taskiq_job(seq: int, mode: str) -> None:
        body(seq, mode)

elif PEER == "huey":
    from huey import RedisHuey

    huey = RedisHuey(QUEUE, url=URL)

    @huey.task()
    def huey_job(seq: int, mode: str) -> None:
        body(seq, mode)

elif PEER != "raw":
    raise SystemExit(f"unknown QS_BENCH_PEER {PEER!r}")
