"""Enqueue's fast path (issue 16): the per-tier ``enqueued`` counter, the spliced envelope
encoding and the guard's closed-breaker path keep every promise of the ordinary path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from tests.support.proxy import FaultProxy
from utils import breakers

EVALSHA = b"EVALSHA"


def process_data(data: dict) -> dict:
    return data


def counters(raw_redis: redis.Redis, config: QueueConfig) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw_redis.hgetall(config.keys.metrics).items()}


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    # Scripts loaded first: a dropped EVALSHA is one the server ran (not a NOSCRIPT answer).
    for name in SCRIPT_NAMES:
        raw_redis.script_load(script_source(name))
    breakers.reset()
    with FaultProxy(redis_server.port) as made:
        yield made
    breakers.reset()


# --- the per queue x priority enqueued counter ------------------------------------------------


def test_enqueued_is_counted_per_queue_and_priority(
    manager: QueueManager, config: QueueConfig, raw_redis: redis.Redis
) -> None:
    manager.enqueue({"n": 1}, process_data, priority="high")
    manager.enqueue({"n": 2}, process_data, queue_name="mail.eu", priority="low")
    manager.enqueue_batch([{"n": i} for i in range(3)], process_data, priority="high")
    manager.enqueue({"n": 9}, process_data, delay=3600)  # scheduled: enqueued as well
    # Writes nothing, so counts nothing: a dedup duplicate and an idempotent id given again.
    manager.enqueue({"n": 3}, process_data, deduplication_key="k")
    manager.enqueue({"n": 4}, process_data, deduplication_key="k")
    manager.enqueue({"n": 5}, process_data, operation_id="op-1")
    manager.enqueue({"n": 5}, process_data, operation_id="op-1")

    seen = counters(raw_redis, config)
    assert seen["enqueued:process_data:high"] == 4
    assert seen["enqueued:mail.eu:low"] == 1
    assert seen["enqueued:process_data:normal"] == 3
    assert seen["enqueued"] == 8  # the global total is unchanged: the sum of the tiers
    assert raw_redis.ttl(config.keys.metrics) > 0


def test_a_resent_enqueue_counts_once(
    make_config: Callable[..., QueueConfig], proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    config = make_config(redis_url=proxy.url, connection_timeout=2.0)
    manager = QueueManager(config)
    fired = proxy.drop_reply(EVALSHA)

    manager.enqueue({"n": 1}, process_data)

    assert fired.is_set() and proxy.requests_matching(EVALSHA) == 2  # the script ran twice
    seen = counters(raw_redis, config)
    assert seen["enqueued:process_data:normal"] == 1 and seen["enqueued"] == 1
    assert raw_redis.llen(config.keys.queue("process_data", "normal")) == 1
    stored = raw_redis.lindex(config.keys.queue("process_data", "normal"), 0)
    assert stored is not None and json.loads(stored)["entity"] == {"n": 1}
