"""The chaos soak's jobs: the plan, the processors and callbacks, and the worker application.

Two processes import this module. ``bench/chaos.py`` uses :func:`plan_jobs` and :data:`KINDS`.
Each worker is the product's own CLI, run in ``bench/``::

    python -m queue_system worker chaos_jobs:app.config --concurrency 8 ...

``app.config`` is built on first access, from the environment the soak sets: ``REDIS_URL``
(the fault proxy), ``CHAOS_DIRECT_URL`` (the server itself) and ``CHAOS_LEASE_S``.

Every run and every callback call is recorded in the server over a direct connection (never
through the proxy). Each write is retried until it works, within a bound. Each is an HSET
under a fresh id, so a write sent again after a lost reply is not counted twice::

    chaos:rec:runs      HASH "<op>|<run id>" -> "<start s>|<pid>"  (a processor started)
    chaos:rec:ends      HASH "<op>|<run id>" -> "<end s>"          (it returned or raised)
    chaos:rec:success   HASH "<op>|<call id>" -> "<time s>|<pid>"  (on_success was called)
    chaos:rec:failure   HASH "<op>|<call id>" -> "<time s>|<pid>"  (on_failure was called)
    chaos:rec:flaky     HASH "<op>" -> "1" once a flaky job's first run has raised
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio

from queue_system import QueueConfig, QueueRetryConfig

QUEUE_PREFIX = "chaosq:"  # the queue's namespace
RUNS, ENDS = "chaos:rec:runs", "chaos:rec:ends"
SUCCESS, FAILURE = "chaos:rec:success", "chaos:rec:failure"
FLAKY = "chaos:rec:flaky"
DIRECT_URL_ENV, LEASE_ENV = "CHAOS_DIRECT_URL", "CHAOS_LEASE_S"
CONNECTION_TIMEOUT_S = 2.0  # workers and producer: a stall longer than this is an outage
RECORD_DEADLINE_S = 30.0  # a record write is retried this long (covers a server restart)
RECORD_BACKOFF_S = (0.05, 0.5)  # first and longest pause between record write attempts
PARENT_CHECK_S = 1.0  # a worker whose soak died ends itself within this
QUEUES = ("orders", "emails", "reports")
PRIORITY_WEIGHTS = {"high": 0.2, "normal": 0.6, "low": 0.2}
DEDUP_SHARE = 0.08  # jobs enqueued twice under one dedup key (the twin must be a duplicate)
ON_SUCCESS, ON_FAILURE = "chaos:on_success", "chaos:on_failure"

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Kind:
    """One kind of job: how it behaves, how it is enqueued, and how it must end."""

    name: str
    weight: float  # share of the jobs
    expect: str = "completed"  # or "failed" (in failures once its retries run out)
    retries: int = 3
    retry_delay_s: float = 0.2
    timeout_s: float | None = None  # None: the worker's --work-timeout
    quick: bool = False  # one short run: its recovery time after a kill is the engine's own

    @property
    def processor(self) -> str:
        return f"chaos:{self.name}"

    def retry_config(self) -> QueueRetryConfig:
        return QueueRetryConfig.fixed(self.retry_delay_s, max_attempts=self.retries)


FAILING: dict[str, Any] = {"expect": "failed", "retries": 1, "retry_delay_s": 0.1}
KINDS = {
    kind.name: kind
    for kind in (
        Kind(name="quick_async", weight=0.62, quick=True),
        Kind(name="quick_sync", weight=0.14, quick=True),
        Kind(name="flaky", weight=0.08),
        Kind(name="always_fail", weight=0.06, **FAILING),
        Kind(name="hang_async", weight=0.03, timeout_s=0.5, **FAILING),
        Kind(name="hang_sync", weight=0.02, timeout_s=0.5, **FAILING),
        Kind(name="block_loop", weight=0.05),
    )
}


@dataclass(frozen=True, kw_only=True)
class Job:
    """One planned enqueue. A twin shares its original's dedup key and must be refused."""

    op_id: str
    kind: str
    queue: str
    priority: str
    entity: dict[str, Any]
    dedup_key: str | None = None
    twin_of: str | None = None

    def enqueue_options(self) -> dict[str, Any]:
        """Keyword arguments of ``QueueManager.enqueue`` after entity and processor."""
        kind = KINDS[self.kind]
        return {
            "queue_name": self.queue,
            "priority": self.priority,
            "operation_id": self.op_id,
            "retry_config": kind.retry_config(),
            "on_success": ON_SUCCESS,
            "on_failure": ON_FAILURE,
            "timeout": kind.timeout_s,
            "deduplication_key": self.dedup_key,
        }


def plan_jobs(count: int, seed: int) -> list[Job]:
    """``count`` jobs (plus dedup twins), the same for the same seed."""
    rng = random.Random(seed)
    names, weights = list(KINDS), [k.weight for k in KINDS.values()]
    priorities, p_weights = list(PRIORITY_WEIGHTS), list(PRIORITY_WEIGHTS.values())
    jobs: list[Job] = []
    for i in range(count):
        kind = rng.choices(names, weights)[0]
        op_id = f"c{seed}-{i:05d}"
        entity: dict[str, Any] = {"op": op_id, "kind": kind}
        if kind in ("quick_async", "quick_sync"):
            entity["sleep_s"] = round(rng.uniform(0.0, 0.03), 4)
        elif kind == "block_loop":
            entity["block_s"] = round(rng.uniform(0.1, 1.0), 3)
        elif kind == "hang_async":
            entity["sleep_s"] = 3.0
        elif kind == "hang_sync":
            entity["sleep_s"] = 2.0
        job = Job(
            op_id=op_id,
            kind=kind,
            queue=rng.choice(QUEUES),
            priority=rng.choices(priorities, p_weights)[0],
            entity=entity,
        )
        if kind == "quick_async" and rng.random() < DEDUP_SHARE / KINDS[kind].weight:
            key = f"chaos-dedup-{op_id}"
            job = dataclasses.replace(job, dedup_key=key)
            twin_id = f"{op_id}-twin"
            jobs.append(job)
            jobs.append(
                Job(
                    op_id=twin_id,
                    kind=kind,
                    queue=job.queue,
                    priority=job.priority,
                    entity={**entity, "op": twin_id},
                    dedup_key=key,
                    twin_of=op_id,
                )
            )
            continue
        jobs.append(job)
    return jobs


# --- records (direct connection, retried within a bound) --------------------------------------

_sync_client: redis.Redis | None = None
_async_clients: dict[int, redis.asyncio.Redis] = {}
_client_lock = threading.Lock()
RETRIED = (redis.ConnectionError, redis.TimeoutError)  # BusyLoadingError is a ConnectionError


def _direct_url() -> str:
    return os.environ[DIRECT_URL_ENV]


def _sync() -> redis.Redis:
    global _sync_client
    with _client_lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(_direct_url(), socket_timeout=2.0)
        return _sync_client


def _async() -> redis.asyncio.Redis:
    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = redis.asyncio.Redis.from_url(
            _direct_url(), socket_timeout=2.0
        )
    return client


def retried(call: Callable[[], T], deadline_s: float = RECORD_DEADLINE_S) -> T:
    """``call()`` until the server answers; re-raises after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    pause = RECORD_BACKOFF_S[0]
    while True:
        try:
            return call()
        except RETRIED:
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, RECORD_BACKOFF_S[1])


async def aretried(call: Callable[[], Awaitable[T]]) -> T:
    """The asyncio twin of :func:`retried`."""
    deadline = time.monotonic() + RECORD_DEADLINE_S
    pause = RECORD_BACKOFF_S[0]
    while True:
        try:
            return await call()
        except RETRIED:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECORD_BACKOFF_S[1])


def _field(op_id: str) -> str:
    return f"{op_id}|{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def arun(entity: dict[str, Any]) -> AsyncIterator[None]:
    """Record the start of a run, and its end if it returns or raises (not if cancelled)."""
    field = _field(entity["op"])
    start = f"{time.time():.4f}|{os.getpid()}"
    await aretried(lambda: _async().hset(RUNS, field, start))
    try:
        yield
    except Exception:
        end = f"{time.time():.4f}"
        await aretried(lambda: _async().hset(ENDS, field, end))
        raise
    end = f"{time.time():.4f}"
    await aretried(lambda: _async().hset(ENDS, field, end))


@contextmanager
def run(entity: dict[str, Any]) -> Iterator[None]:
    """The sync twin of :func:`arun`, for processors that run in the worker's threads."""
    field = _field(entity["op"])
    start = f"{time.time():.4f}|{os.getpid()}"
    retried(lambda: _sync().hset(RUNS, field, start))
    try:
        yield
    finally:
        end = f"{time.time():.4f}"
        retried(lambda: _sync().hset(ENDS, field, end))


# --- processors and callbacks (registered under fixed names in the worker) --------------------


async def quick_async(entity: dict[str, Any]) -> dict[str, Any]:
    async with arun(entity):
        await asyncio.sleep(entity["sleep_s"])
    return {"op": entity["op"], "ok": True}


def quick_sync(entity: dict[str, Any]) -> dict[str, Any]:
    with run(entity):
        time.sleep(entity["sleep_s"])
    return {"op": entity["op"], "ok": True}


async def flaky(entity: dict[str, Any]) -> dict[str, Any]:
    """Raises on its first run, succeeds on the retry."""
    async with arun(entity):
        first = await aretried(lambda: _async().hsetnx(FLAKY, entity["op"], "1"))
        if first:
            raise RuntimeError("flaky: the first run fails on purpose")
    return {"op": entity["op"], "ok": True}


async def always_fail(entity: dict[str, Any]) -> None:
    async with arun(entity):
        raise ValueError("always_fail: this job never succeeds")


async def hang_async(entity: dict[str, Any]) -> None:
    """Sleeps past its timeout: the worker cancels it (an async processor can be stopped)."""
    async with arun(entity):
        await asyncio.sleep(entity["sleep_s"])


def hang_sync(entity: dict[str, Any]) -> None:
    """Sleeps past its timeout in a pool thread, which nothing can stop: it runs on."""
    with run(entity):
        time.sleep(entity["sleep_s"])


async def block_loop(entity: dict[str, Any]) -> dict[str, Any]:
    """Blocks the worker's event loop (a sync call inside ``async def``), then succeeds."""
    async with arun(entity):
        time.sleep(entity["block_s"])
    return {"op": entity["op"], "ok": True}


async def on_success(data: dict[str, Any]) -> None:
    value = f"{time.time():.4f}|{os.getpid()}"
    field = _field(data["operation_id"])
    await aretried(lambda: _async().hset(SUCCESS, field, value))


async def on_failure(data: dict[str, Any]) -> None:
    value = f"{time.time():.4f}|{os.getpid()}"
    field = _field(data["operation_id"])
    await aretried(lambda: _async().hset(FAILURE, field, value))


PROCESSORS: dict[str, Callable[..., Any]] = {
    "chaos:quick_async": quick_async,
    "chaos:quick_sync": quick_sync,
    "chaos:flaky": flaky,
    "chaos:always_fail": always_fail,
    "chaos:hang_async": hang_async,
    "chaos:hang_sync": hang_sync,
    "chaos:block_loop": block_loop,
    ON_SUCCESS: on_success,
    ON_FAILURE: on_failure,
}


# --- the worker application -------------------------------------------------------------------


def _watch_parent() -> None:
    """End this worker if the soak that started it dies (no orphans on a crashed soak)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(3)

    threading.Thread(target=watch, name="chaos-parent-watch", daemon=True).start()


class App:
    """What the CLI loads: ``chaos_jobs:app.config`` (built on first access only)."""

    @functools.cached_property
    def config(self) -> QueueConfig:
        config = QueueConfig(
            queue_prefix=QUEUE_PREFIX,
            lease_timeout=float(os.environ[LEASE_ENV]),
            connection_timeout=CONNECTION_TIMEOUT_S,
        )
        for name, fn in PROCESSORS.items():
            config.register_callback(fn, name=name)
        _watch_parent()
        return config


app = App()
