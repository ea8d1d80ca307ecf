"""The reference's "Basic Usage" and "Graceful Shutdown and Cleanup", as written.

Run: REDIS_URL=redis://localhost:6379/0 python examples/basic_usage.py

Adaptations: the URL comes from ``$REDIS_URL``; the worker runs in burst mode, so the
reference's endless ``while True`` loop ends once the queue is empty instead of on Ctrl+C.
"""

import asyncio
import os
from typing import Any

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker  # noqa: F401
from utils import circuit_breaker, retry_with_backoff, with_timeout  # noqa: F401 (see resilience.py)

# Create shared configuration
config = QueueConfig(redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))

# Create queue manager and worker (burst: stop once nothing is waiting or running)
queue = QueueManager(config=config)
worker = QueueWorker(config=config, max_workers=2, burst=True)


# Define processor function (can be async)
async def process_data(data: dict[str, Any]) -> dict[str, Any]:
    # Process the data...
    return {"status": "success", "result": data}


# Define callback function (can be async)
async def on_success(data: dict[str, Any]) -> None:
    print(f"Successfully processed: {data['result']}")


# Enqueue an operation - simple, synchronous API
result = queue.enqueue(
    entity={"user_id": "123", "action": "update"},
    processor=process_data,
    priority="high",
    on_success=on_success,
)
print(f"Enqueued operation {result['operation_id']} ({result['status']}, {result['priority']})")


# Start the worker (this is async because it runs continuously)
async def main() -> None:
    await worker.start()
    print(f"Worker running: {worker.running}")
    try:
        # Keep the worker running (in burst mode it stops by itself once the queue is empty)
        while worker.running:
            await asyncio.sleep(0.05)
    finally:
        # Graceful shutdown: 1. stop taking new items (a no-op if the burst already ended)
        await worker.stop()
    print(f"Worker running: {worker.running}")

    # 2. Optionally flush any metrics or logs
    config.logger.info("Shutting down queue system")

    # 3. Close Redis connections explicitly if needed
    if hasattr(config, "redis_client") and config.redis_client:
        print(f"Queue status before closing: {queue.get_queue_status()}")
        config.redis_client.close()


if __name__ == "__main__":
    asyncio.run(main())
