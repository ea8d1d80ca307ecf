"""The reference's "Batch Enqueuing", as written, plus a large batch and per-entity dedup.

Run: REDIS_URL=redis://localhost:6379/0 python examples/batch_enqueue.py

``enqueue_batch`` writes every item in one atomic round trip: all of them, or none.
"""

import asyncio
import os
import time
from typing import Any

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker

config = QueueConfig(redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
queue = QueueManager(config=config)
retry_config = QueueRetryConfig.fixed(delay=0.1, max_attempts=3)
processed: list[int] = []


async def process_data(data: dict[str, Any]) -> dict[str, Any]:
    processed.append(data["id"])
    return {"status": "success", "result": data}


async def main() -> None:
    # Process multiple items in a single call
    entities = [
        {"id": 1, "name": "Item 1"},
        {"id": 2, "name": "Item 2"},
        {"id": 3, "name": "Item 3"},
    ]

    results = queue.enqueue_batch(
        entities=entities, processor=process_data, priority="high", retry_config=retry_config
    )

    print(f"Enqueued {len(results)} items")
    print(f"  first result: {results[0]}")

    # A larger batch is still one round trip.
    started = time.perf_counter()
    big = queue.enqueue_batch(
        [{"id": i, "name": f"Item {i}"} for i in range(100, 1100)],
        processor=process_data,
        priority="low",
    )
    print(f"Enqueued {len(big)} items in {(time.perf_counter() - started) * 1000:.1f} ms")

    # deduplication_key=True keys each entity on its hash: an entity already queued is not
    # written again; the call returns the queued item's operation_id with status "duplicate".
    again = queue.enqueue_batch(
        [{"id": 7, "name": "Item 7"}, {"id": 7, "name": "Item 7"}, {"id": 8, "name": "Item 8"}],
        processor=process_data,
        deduplication_key=True,
    )
    print(f"Dedup batch statuses: {[r['status'] for r in again]}")

    await QueueWorker(config=config, max_workers=10, burst=True).run()
    print(f"Worker processed {len(processed)} items; high priority first: {processed[:3]}")
    config.redis_client.close()


if __name__ == "__main__":
    asyncio.run(main())
