"""The reference's "Success and Failure Callbacks", as written, plus a failing twin.

Run: REDIS_URL=redis://localhost:6379/0 python examples/callbacks.py

The reference's call succeeds, so ``notify_success`` runs; the same call with a processor that
always fails shows ``notify_failure`` (once, after the last retry). Callbacks may be sync or
async, callables or registered names; each gets one dict (keys printed below).
"""

import asyncio
import logging
import os
from typing import Any

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker

config = QueueConfig(redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
queue = QueueManager(config=config)
retry_config = QueueRetryConfig.fixed(delay=0.1, max_attempts=2)  # short, so the example ends


async def process_data(data: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "result": data}


async def charge_card(data: dict[str, Any]) -> None:
    raise RuntimeError(f"card declined for user {data['user_id']}")


async def notify_success(data: dict[str, Any]) -> None:
    print(f"Operation {data['operation_id']} succeeded")
    print(f"  on_success data keys: {sorted(data)}")


async def notify_failure(data: dict[str, Any]) -> None:
    print(f"Operation {data['operation_id']} failed: {data['error']}")
    print(f"  on_failure data keys: {sorted(data)}")
    print(f"  runs: {data['attempts']}, history: {[h['error_type'] for h in data['history']]}")


def audit(data: dict[str, Any]) -> None:
    """A sync callback registered under a name; the worker runs it in its thread pool."""
    print(f"audit: {data['processor']} -> {data['result']}")


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s: %(message)s")
    # As written in the reference:
    queue.enqueue(
        entity={"user_id": "123"},
        processor=process_data,
        retry_config=retry_config,
        on_success=notify_success,
        on_failure=notify_failure,
    )
    # The same call with a processor that always fails: notify_failure runs after 1 + 2 runs.
    failing = queue.enqueue(
        entity={"user_id": "456"},
        processor=charge_card,
        retry_config=retry_config,
        on_success=notify_success,
        on_failure=notify_failure,
    )
    print(f"Enqueued failing operation {failing['operation_id']}")
    # A callback given by name: only names registered (or allow-listed) ever run.
    config.register_callback(audit, name="audit")
    queue.enqueue(entity={"user_id": "789"}, processor=process_data, on_success="audit")

    await QueueWorker(config=config, max_workers=2, burst=True, wait_scheduled=True).run()
    config.redis_client.close()


if __name__ == "__main__":
    asyncio.run(main())
