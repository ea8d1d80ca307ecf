"""Cost: a dashboard refresh and a /metrics scrape over 1,000 queues and 100k waiting items
stay bounded (measured and printed; run with -s to see the figures)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
import redis

from queue_system import QueueConfig
from queue_system.web import create_app
from tests.support.web import TestClient

QUEUES, PER_QUEUE = 1000, 100
TOKEN = "cost-token"


@pytest.mark.slow
def test_refresh_and_scrape_with_1000_queues_and_100k_items(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config()
    # Given: 1,000 registered queues with 100 waiting items each (pushed as producers do).
    pipe = raw_redis.pipeline(transaction=False)
    for q in range(QUEUES):
        name = f"q{q:04d}"
        items = [
            f'{{"v":1,"id":"{name}-{n}","enqueued_at":1.0,"entity":{{}}}}' for n in range(PER_QUEUE)
        ]
        pipe.lpush(config.keys.queue(name), *items)
        pipe.sadd(config.keys.registry, name)
    pipe.execute()
    with TestClient(create_app(config, token=TOKEN)) as client:
        client.get("/login", params={"token": TOKEN})
        figures = {}
        for path in ("/fragments/overview", "/", "/metrics", "/queues/q0500/normal?page=2"):
            started = time.perf_counter()
            answer = client.get(path)
            figures[path] = round((time.perf_counter() - started) * 1000, 1)
            assert answer.status_code == 200
        assert 'id="total-waiting">100000<' in client.get("/fragments/overview").text
        scrape = client.get("/metrics").text
        assert len(re.findall(r"^queue_system_waiting\{", scrape, re.MULTILINE)) == QUEUES * 3
    print(f"\n{QUEUES} queues, {QUEUES * PER_QUEUE} waiting items: ms per request {figures}")
