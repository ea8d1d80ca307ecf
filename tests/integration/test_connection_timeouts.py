"""What a frozen server costs a caller: one ``connection_timeout``, not two.

Clients built by ``engine/connection.py`` reconnect once after a dropped connection, but do
not re-send a command that timed out: a stalled server would double every wait, and the
worker's own retry (which re-sends the same call id) takes over after a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import script_source
from queue_system.worker.store import ClaimedItem, WorkerBroker
from tests.support.proxy import FaultProxy

TIMEOUT_S = 0.5


async def job(data: dict) -> None:
    return None


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    raw_redis.script_load(script_source("claim"))
    with FaultProxy(redis_server.port) as made:
        yield made


@pytest.fixture
def proxied(make_config: Callable[..., QueueConfig], proxy: FaultProxy) -> QueueConfig:
    return make_config(redis_url=proxy.url, connection_timeout=TIMEOUT_S)


def test_a_frozen_server_costs_the_sync_client_one_timeout(
    proxied: QueueConfig, proxy: FaultProxy, key_prefix: str
) -> None:
    client = proxied.redis_client
    client.ping()
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.get(f"{key_prefix}x")
    elapsed = time.monotonic() - started
    proxy.restore()
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S * 1.6


def test_a_frozen_server_costs_the_worker_client_one_timeout(
    proxied: QueueConfig, proxy: FaultProxy, key_prefix: str
) -> None:
    async def main() -> float:
        client = proxied.make_async_client()
        try:
            await client.ping()
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                await client.get(f"{key_prefix}x")
            return time.monotonic() - started
        finally:
            proxy.restore()
            await client.aclose()

    elapsed = asyncio.run(main())
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S * 1.6


def test_a_claim_that_timed_out_is_not_resent_and_the_next_claim_gets_its_items(
    proxied: QueueConfig, proxy: FaultProxy, raw_redis: redis.Redis
) -> None:
    QueueManager(proxied).enqueue_batch([{"n": n} for n in range(4)], job)
    keys = proxied.keys.claim_order(["job"])
    claim_sha = hashlib.sha1(script_source("claim").encode()).hexdigest().encode()

    async def main() -> list[ClaimedItem]:
        client = proxied.make_async_client()
        try:
            broker = WorkerBroker(proxied, client, "w")
            # Given a server that answers the claim later than connection_timeout
            proxy.hold_reply(claim_sha, TIMEOUT_S * 3)
            with pytest.raises(redis.TimeoutError):
                await broker.claim(keys, 2)
            # Then the claim was sent once (the server ran it) ...
            assert proxy.requests_matching(claim_sha) == 1
            # ... and the worker's next claim re-sends that call and gets the same items
            return await broker.claim(keys, 2)
        finally:
            await client.aclose()

    items = asyncio.run(main())
    assert [json.loads(i.raw)["entity"]["n"] for i in items] == [0, 1]
    assert sorted(t.decode() for t in raw_redis.hkeys(proxied.keys.inflight)) == sorted(
        i.token for i in items
    )
