"""Redis outages: fast, clear producer errors; the worker survives and loses nothing.

The server is the test's own (persistent, so a crash keeps every acknowledged write). It is
frozen (SIGSTOP), then killed (SIGKILL) and restarted, while a worker process runs and a
producer keeps enqueueing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueUnavailableError
from queue_system.engine.embedded_server import EmbeddedRedis
from tests.support.waiting import wait_until
from utils import breakers

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "outage:"
DONE_KEY = "outage-test:done"  # (operation id, completion time) of every finished job

WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from queue_system import QueueConfig, QueueWorker
    from tests.integration.test_outage import record_done
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2],
                         connection_timeout=0.5, lease_timeout=5.0)
    config.register_callback(record_done)
    asyncio.run(QueueWorker(config, max_workers=4).run())
    """
)


def record_done(data: dict) -> None:
    """In the worker: note which operation finished, and when (same server, persisted)."""
    client = redis.Redis.from_url(data["url"], socket_timeout=2)
    try:
        client.rpush(DONE_KEY, f"{data['n']} {time.time()}")
    finally:
        client.close()


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    made = EmbeddedRedis(persistent=True).start()
    breakers.reset()
    yield made
    made.stop()
    breakers.reset()


class Producer(threading.Thread):
    """Enqueues numbered jobs until told to stop; records what was accepted and each error."""

    def __init__(self, config: QueueConfig, url: str) -> None:
        super().__init__(daemon=True)
        self.manager = QueueManager(config)
        self.url = url
        self.accepted: list[int] = []
        self.errors: list[tuple[str, float, float]] = []  # (type, started, seconds)
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                self.manager.enqueue({"n": n, "url": self.url}, record_done, queue_name="work")
            except Exception as exc:  # the test asserts which errors these are
                self.errors.append((type(exc).__name__, started, time.monotonic() - started))
            else:
                self.accepted.append(n)
            n += 1
            self.halt.wait(0.01)  # a steady trickle of producer traffic, not a synchronisation


def done_numbers(client: redis.Redis) -> dict[int, float]:
    done: dict[int, float] = {}
    for entry in client.lrange(DONE_KEY, 0, -1):
        n, at = entry.split()
        done.setdefault(int(n), float(at))
    return done


@pytest.mark.slow
def test_freeze_then_crash_loses_nothing_and_the_worker_survives(server: EmbeddedRedis) -> None:
    config = QueueConfig(redis_url=server.url, queue_prefix=PREFIX, connection_timeout=0.5)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_CHILD, server.url, PREFIX],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    producer = Producer(config, server.url)
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    try:
        producer.start()
        wait_until(lambda: len(done_numbers(client)) >= 20, timeout=30, message="jobs flowing")

        # When the server freezes, then crashes and comes back
        server.freeze()
        frozen_at = time.monotonic()
        wait_until(lambda: len(producer.errors) >= 10, timeout=30, message="producer errors")
        server.kill()
        wait_until(lambda: len(producer.errors) >= 20, timeout=30)
        server.start()
        restarted_at = time.time()
        accepted_before_stop = len(producer.accepted)
        wait_until(lambda: len(producer.accepted) > accepted_before_stop + 20, timeout=30,
                   message="producer recovers")  # fmt: skip
        producer.halt.set()
        producer.join(timeout=10)

        # Then every accepted job completes, and the worker process is still the same one
        accepted = set(producer.accepted)
        wait_until(lambda: accepted <= set(done_numbers(client)), timeout=60,
                   message="every accepted job done")  # fmt: skip
        assert worker.poll() is None, "the worker process died"
    finally:
        producer.halt.set()
        worker.kill()
        worker.wait()
        client.close()
        config.redis_client.close()

    # The producer saw only clear "queue unavailable" errors, fast once the breaker opened
    kinds = {kind for kind, _, _ in producer.errors}
    assert kinds == {"QueueUnavailableError"}, kinds
    open_errors = [took for kind, started, took in producer.errors if started > frozen_at + 2]
    assert open_errors and sorted(open_errors)[len(open_errors) // 2] < 0.05
    first_after_restart = min(at for at in done_numbers(client_for(server)).values()
                              if at >= restarted_at)  # fmt: skip
    report = (
        f"recovery: first job done {first_after_restart - restarted_at:.3f}s after restart; "
        f"enqueue error latency while open: median "
        f"{1000 * sorted(open_errors)[len(open_errors) // 2]:.2f} ms, "
        f"max {1000 * max(open_errors):.2f} ms over {len(open_errors)} errors"
    )
    print(report)
    Path(os.environ.get("OUTAGE_REPORT", "/dev/null")).write_text(report)


def client_for(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=2)


def test_enqueue_fails_fast_with_a_clear_error_when_redis_is_down() -> None:
    breakers.reset()
    dead = EmbeddedRedis()  # a free port nothing listens on
    config = QueueConfig(redis_url=dead.url, connection_timeout=0.5, max_connection_retries=1)
    manager = QueueManager(config)
    took = []
    for _ in range(6):
        started = time.monotonic()
        with pytest.raises(QueueUnavailableError, match="queue unavailable"):
            manager.enqueue({"x": 1}, record_done)
        took.append(time.monotonic() - started)
    assert max(took[-3:]) < 0.05  # the breaker is open: rejected without touching Redis
    with pytest.raises(QueueUnavailableError, match=r"redis 127\.0\.0\.1"):
        manager.get_queue_status()  # the message names the server's breaker
    breakers.reset()
    config.redis_client.close()
