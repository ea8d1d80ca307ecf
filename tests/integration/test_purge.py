"""purge_queue: bounded chunks (the server keeps answering), and no bookkeeping left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from queue_system import AsyncQueueManager, QueueConfig, QueueManager
from queue_system.engine.scripts import script_source
from queue_system.producer.purge import PurgeProgress

# While purging 200k items, another client's PING must answer within PING_BOUND_S, and no
# command may run longer than SCRIPT_BOUND_S on the server. One script over the whole list
# blocked the server for 1.4 s (the PING waited that long); a chunk of 1,000 items takes 4-5 ms
# of server time (up to 20 ms measured while the 2-core machine was loaded), and the slowest
# PING measured 20-100 ms. The bounds leave room for a loaded machine.
PING_BOUND_S = 0.3
SCRIPT_BOUND_S = 0.1
BIG = 200_000


def process_data(data: dict) -> dict:
    return data


PROBE = """
import select, sys, time
import redis
client = redis.Redis.from_url(sys.argv[1], socket_timeout=10)
client.ping()
print("ready", flush=True)
pings, slowest = 0, 0.0
while not select.select([sys.stdin], [], [], 0)[0]:  # until the test closes our stdin
    started = time.perf_counter()
    client.ping()
    slowest = max(slowest, time.perf_counter() - started)
    pings += 1
print(pings, slowest, flush=True)
"""


class PingProbe:
    """Another client, in its own process (no GIL shared with the purge), PINGing the server
    until stopped; reports how many PINGs it made and the slowest answer."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PROBE, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        self.pings = 0
        self.slowest_s = 0.0

    def stop(self) -> None:
        out, _ = self.process.communicate(input="", timeout=30)
        pings, slowest = out.split()
        self.pings, self.slowest_s = int(pings), float(slowest)


@contextmanager
def slowlog_over(raw_redis: redis.Redis, micros: int) -> Iterator[list[Any]]:
    """Collect the server's own log of commands that ran longer than ``micros`` (commands a
    script calls are logged too, on newer servers)."""
    settings = raw_redis.config_get("slowlog-*")
    raw_redis.config_set("slowlog-log-slower-than", micros)
    raw_redis.config_set("slowlog-max-len", 1024)
    raw_redis.slowlog_reset()
    entries: list[Any] = []
    try:
        yield entries
        entries.extend(raw_redis.slowlog_get(1024))
    finally:
        for name in ("slowlog-log-slower-than", "slowlog-max-len"):
            raw_redis.config_set(name, settings[name])


def fill(config: QueueConfig, raw_redis: redis.Redis, count: int, priority: str = "low") -> str:
    """``count`` real envelopes (random ids, as enqueue makes) on one waiting list, in bulk."""
    manager = QueueManager(config)
    op_id = manager.enqueue({"n": 0}, process_data, priority=priority)["operation_id"]
    key = config.keys.queue("process_data", priority)
    template = raw_redis.lpop(key)
    assert isinstance(template, bytes)
    raw_redis.delete(config.keys.operation(op_id))
    step = 10_000
    for start in range(0, count, step):
        items = [
            template.replace(op_id.encode(), os.urandom(16).hex().encode())
            for n in range(start, min(start + step, count))
        ]
        raw_redis.lpush(key, *items)
    return key


def test_purge_of_a_big_queue_keeps_the_server_responsive(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis, redis_url: str
) -> None:
    # Given 200,000 waiting items
    key = fill(config, raw_redis, BIG)
    with slowlog_over(raw_redis, int(SCRIPT_BOUND_S * 1e6)) as slow:
        probe = PingProbe(redis_url)
        try:
            # When they are purged while another client keeps pinging
            purged = manager.purge_queue("process_data", priority="low")
        finally:
            probe.stop()

    # Then every item is gone, no command held the server long, and no PING waited long
    assert purged == BIG
    assert raw_redis.llen(key) == 0
    assert [(entry["command"], entry["duration"]) for entry in slow] == []
    assert probe.slowest_s < PING_BOUND_S, f"a PING waited {probe.slowest_s:.3f}s"
    assert probe.pings > 10


def test_purge_chunks_are_bounded_in_bytes(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    # Items may be up to max_payload_bytes (1 MB) each: a chunk counts bytes, not only items.
    key = config.keys.queue("process_data")
    raw_redis.lpush(key, *[bytes([65 + n]) * 300_000 for n in range(20)])
    with slowlog_over(raw_redis, 0) as log:
        assert manager.purge_queue("process_data") == 20
    assert raw_redis.llen(key) == 0
    chunks = [e for e in log if e["command"].startswith(b"EVALSHA")]
    assert len(chunks) >= 6  # at most 3 items of 300 KB (1 MB) per call


def test_purge_deletes_status_records_and_frees_dedup_keys(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    batch = manager.enqueue_batch([{"i": i} for i in range(3)], process_data, priority="low")
    dedup = manager.enqueue({"i": 9}, process_data, priority="low", deduplication_key="d")
    kept = manager.enqueue({"i": 10}, process_data, priority="high", deduplication_key="h")

    assert manager.purge_queue("process_data", priority="low") == 4

    for result in [*batch, dedup]:
        assert manager.get_operation(result["operation_id"]) is None
    assert not raw_redis.exists(config.keys.dedup("d"))
    assert manager.get_operation(kept["operation_id"])["status"] == "pending"  # type: ignore[index]
    assert raw_redis.get(config.keys.dedup("h")) == kept["operation_id"].encode()
    assert manager.enqueue({"i": 9}, process_data, deduplication_key="d")["status"] == "queued"
    assert manager.purge_queue("process_data", priority="low") == 0


def test_purge_keeps_a_dedup_key_another_item_holds(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    # An item whose dedup key was since taken by a newer item (e.g. an operator's requeue)
    # must not free the newer item's key.
    old = manager.enqueue({"i": 1}, process_data, priority="low", deduplication_key="d")
    raw_redis.set(config.keys.dedup("d"), "newer")
    assert manager.purge_queue("process_data", priority="low") == 1
    assert manager.get_operation(old["operation_id"]) is None
    assert raw_redis.get(config.keys.dedup("d")) == b"newer"


def test_purge_across_many_chunks_with_a_concurrent_consumer(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis, redis_url: str
) -> None:
    # Given 5,000 waiting items with records, and a consumer popping from the same end
    results = manager.enqueue_batch([{"i": i} for i in range(5000)], process_data)
    key = config.keys.queue("process_data")
    consumed: list[bytes] = []
    halt = threading.Event()

    def consumer() -> None:
        client = redis.Redis.from_url(redis_url)
        while not halt.is_set() and (item := client.rpop(key)):
            consumed.append(item)
        client.close()

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    try:
        purged = manager.purge_queue("process_data")
    finally:
        halt.set()
        thread.join(timeout=10)

    # Then each item was either purged or consumed, never both, never left behind
    assert purged + len(consumed) == 5000
    assert raw_redis.llen(key) == 0
    records = sum(raw_redis.exists(config.keys.operation(r["operation_id"])) for r in results)
    assert records == len(consumed)  # a consumed item keeps its record; a purged one does not


def test_async_purge_is_the_awaited_twin(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    results = manager.enqueue_batch([{"i": i} for i in range(2500)], process_data)

    async def main() -> int:
        aio = AsyncQueueManager(config)
        try:
            return await aio.purge_queue("process_data")
        finally:
            await aio.aclose()

    assert asyncio.run(main()) == 2500
    assert raw_redis.llen(config.keys.queue("process_data")) == 0
    assert not any(raw_redis.exists(config.keys.operation(r["operation_id"])) for r in results)


def test_purge_removes_junk_items_too(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    key = config.keys.queue("process_data")
    raw_redis.lpush(key, b"\xff not json", b'{"v":1,"id":"half"', b'{"dedup":"x"}')
    manager.enqueue({"i": 1}, process_data)
    assert manager.purge_queue("process_data") == 4
    assert raw_redis.llen(key) == 0


def test_purge_chunk_stops_at_an_item_pushed_back_onto_the_tail(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    # Given a chunk read from the tail, then an item released back onto the tail meanwhile
    results = manager.enqueue_batch([{"i": i} for i in range(5)], process_data)
    key = config.keys.queue("process_data")
    chunk = raw_redis.lrange(key, -5, -1)
    keys, args = PurgeProgress(left=5).plan(config, key, chunk)
    raw_redis.rpush(key, b"released")
    script = raw_redis.register_script(script_source("purge"))

    # Then the chunk's call removes nothing (that item was not read, its keys are unknown)
    assert script(keys=keys, args=args) == 0
    assert raw_redis.llen(key) == 6
    # And once a worker took it back, the same call removes the chunk with its records
    assert raw_redis.rpop(key) == b"released"
    assert script(keys=keys, args=args) == 5
    assert raw_redis.llen(key) == 0
    assert not any(raw_redis.exists(config.keys.operation(r["operation_id"])) for r in results)
