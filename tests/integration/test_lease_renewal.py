"""Leases hold while a job runs, and only then (finding 8 of issue 10).

A "thief" plays every other worker at its most eager: it recovers expired leases and claims
every 10 ms, straight to the server. Whenever it gets an item that is still running, two
workers run the same job at once: that must not happen while the job runs within its
timeout, whatever the network or the processor does to the worker's event loop; and it must
happen (the item is reclaimed) once a hung item is past its own deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import script_source
from queue_system.worker.store import WorkerBroker
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until

EVENTS: list[Any] = []
STARTED = threading.Event()
RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    EVENTS.clear()
    STARTED.clear()
    RELEASE.clear()
    yield
    RELEASE.set()


async def runs_for(data: dict) -> str:
    EVENTS.append(("start", data["n"]))
    STARTED.set()
    await asyncio.sleep(data["seconds"])
    EVENTS.append(("end", data["n"]))
    return "done"


async def blocks_the_loop(data: dict) -> str:
    """A processor written wrongly: it blocks its worker's event loop (time.sleep in async)."""
    EVENTS.append(("start", data["n"]))
    STARTED.set()
    RELEASE.wait(data["seconds"])
    EVENTS.append(("end", data["n"]))
    return "done"


class Thief:
    """Another worker at its most eager: recover + claim every 10 ms on its own connection."""

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self.claims: list[float] = []  # monotonic time of each claim it won
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        client = self.config.make_async_client()
        broker = WorkerBroker(self.config, client, "thief")
        keys = self.config.keys.claim_order(["jobs"])
        try:
            while not self._stop.is_set():
                await broker.maintain(self.config.clock.time())
                if await broker.claim(keys, 1):
                    self.claims.append(time.monotonic())
                await asyncio.sleep(0.01)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def renew_sha() -> bytes:
    return hashlib.sha1(script_source("renew").encode()).hexdigest().encode()


def test_a_blip_shorter_than_the_lease_never_lets_a_second_worker_run_the_job(
    make_config: Callable[..., QueueConfig], redis_server: EmbeddedRedis
) -> None:
    with FaultProxy(redis_server.port) as proxy:
        # Given a worker behind a proxy (lease 3 s: renewals every 1 s) and a thief
        config = make_config(redis_url=proxy.url, lease_timeout=3.0, connection_timeout=0.5)
        config.register_callback(runs_for)
        direct = make_config(lease_timeout=3.0)
        QueueManager(direct).enqueue({"n": 1, "seconds": 6.0}, runs_for, queue_name="jobs")

        async def main() -> None:
            worker = QueueWorker(config, max_workers=1)
            thief = Thief(direct)
            await worker.start()
            try:
                await async_wait_until(STARTED.is_set)
                thief.start()
                seen = proxy.requests_matching(renew_sha())
                await async_wait_until(lambda: proxy.requests_matching(renew_sha()) > seen)
                # When the network stalls for 1.2 s, starting just before the next renewal,
                # and ends with every connection reset (what was sent meanwhile is lost)
                # (the fault is placed in time; nothing waits on it to synchronise)
                await asyncio.sleep(0.9)
                proxy.blackhole()
                await asyncio.sleep(1.2)
                proxy.reset_all()
                proxy.restore()

                # Then the job runs to its end with nobody else holding it
                await async_wait_until(lambda: ("end", 1) in EVENTS, timeout=10)
                await async_wait_until(lambda: direct.get_metrics()["succeeded"] == 1)
            finally:
                await thief.stop()
                await worker.stop(grace_period=1)
            assert thief.claims == [], "a second worker claimed the job while it ran"

        asyncio.run(main())
    assert EVENTS == [("start", 1), ("end", 1)], "the job ran twice"


def run_worker_in_thread(
    config: QueueConfig, until: threading.Event, **kwargs: Any
) -> Callable[[], None]:
    """Run a QueueWorker on its own event loop in a thread until ``until``; returns a joiner."""

    async def main() -> None:
        worker = QueueWorker(config, **kwargs)
        await worker.start()
        await asyncio.to_thread(until.wait, 30)
        await worker.stop(grace_period=1)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    return lambda: thread.join(timeout=30)


def test_a_processor_blocking_the_event_loop_keeps_its_lease_and_the_lag_is_logged(
    make_config: Callable[..., QueueConfig], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker whose processor blocks the event loop for 1.5 leases (lease 3 s)
    config = make_config(lease_timeout=3.0)
    op = QueueManager(config).enqueue({"n": 2, "seconds": 4.5}, blocks_the_loop, queue_name="jobs")
    finished = threading.Event()
    join = run_worker_in_thread(config, finished, max_workers=1)

    async def main() -> None:
        thief = Thief(config)
        await async_wait_until(STARTED.is_set)
        thief.start()
        try:
            # Then the lease holds (renewed from another thread) and the job is acked
            await async_wait_until(lambda: config.get_metrics()["succeeded"] == 1, timeout=15)
        finally:
            await thief.stop()
        assert thief.claims == [], "a second worker claimed the job while it ran"

    try:
        asyncio.run(main())
    finally:
        finished.set()
        join()
    assert EVENTS == [("start", 2), ("end", 2)]
    assert QueueManager(config).get_operation(op["operation_id"])["status"] == "completed"
    assert "event loop" in caplog.text and "blocked" in caplog.text


def test_a_hung_item_past_its_own_deadline_is_reclaimed(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given an item with a 0.5 s timeout whose processor blocks the loop until released
    config = make_config(lease_timeout=1.0)
    QueueManager(config).enqueue(
        {"n": 3, "seconds": 30}, blocks_the_loop, queue_name="jobs", timeout=0.5
    )
    finished = threading.Event()
    join = run_worker_in_thread(config, finished, max_workers=1)

    async def main() -> None:
        thief = Thief(config)
        await async_wait_until(STARTED.is_set)
        thief.start()
        try:
            # Then renewal stops at its deadline (timeout + a renewal interval) and the lease
            # expires: another worker can take the item over
            await async_wait_until(lambda: thief.claims, timeout=10)
        finally:
            await thief.stop()

    try:
        asyncio.run(main())
    finally:
        RELEASE.set()
        finished.set()
        join()
    # Nothing lost: the item is leased, waiting or completed
    waiting = raw_redis.llen(config.keys.queue("jobs"))
    held = raw_redis.hlen(config.keys.inflight)
    assert held + waiting + config.get_metrics()["succeeded"] == 1


def test_an_item_claimed_ahead_is_not_kept_from_others_while_the_loop_is_blocked(
    make_config: Callable[..., QueueConfig], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker (one executor, one item claimed ahead) whose processor blocks its loop
    # for 1.5 leases, and a second item waiting behind it in the worker's buffer
    config = make_config(lease_timeout=3.0)
    manager = QueueManager(config)
    first = manager.enqueue({"n": 4, "seconds": 4.5}, blocks_the_loop, queue_name="jobs")
    manager.enqueue({"n": 5, "seconds": 0}, runs_for, queue_name="jobs")
    finished = threading.Event()
    join = run_worker_in_thread(config, finished, max_workers=1, prefetch=1)

    async def main() -> Thief:
        thief = Thief(config)
        await async_wait_until(STARTED.is_set)
        thief.start()
        try:
            # Then the buffered item's lease runs out (the blocked loop could not start it)
            # and another worker takes it, while the running one keeps its lease
            await async_wait_until(lambda: config.get_metrics()["succeeded"] == 1, timeout=15)
            await async_wait_until(lambda: ("end", 4) in EVENTS)
        finally:
            await thief.stop()
        return thief

    try:
        thief = asyncio.run(main())
    finally:
        finished.set()
        join()
    assert len(thief.claims) == 1  # the buffered item, taken over
    # And the blocked worker did not run it as well once its loop was free again
    assert ("start", 5) not in EVENTS
    assert "giving it back unstarted" in caplog.text
    assert QueueManager(config).get_operation(first["operation_id"])["status"] == "completed"
