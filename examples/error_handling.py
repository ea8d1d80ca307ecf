"""The reference's "Error Handling": the two dead-letter queues, and errors at enqueue time.

Run: REDIS_URL=redis://localhost:6379/0 python examples/error_handling.py

* ``failures``: the processor kept raising until its retries ran out (business failure).
* ``system_errors``: the item could not be run at all (here: a processor name that nothing
  registered). Both keep the reason and the original payload.
* Bad arguments raise ``ValueError``/``TypeError`` and write nothing; an unreachable Redis
  raises ``QueueUnavailableError`` at once.
"""

import asyncio
import json
import logging
import os
from typing import Any

from queue_system import (
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    QueueSystemError,
    QueueUnavailableError,
    QueueWorker,
)

# unknown_processor_ttl=0: an item naming a processor no worker knows goes to system_errors at
# once (by default it waits up to an hour for a deploy that brings it; a burst run would wait).
config = QueueConfig(
    redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"), unknown_processor_ttl=0
)
queue = QueueManager(config=config)


async def import_orders(data: dict[str, Any]) -> None:
    raise ConnectionError(f"supplier API for {data['supplier']} is down")


def enqueue_time_errors() -> None:
    """Each bad call raises before anything is written."""
    bad_calls: dict[str, dict[str, Any]] = {
        "unknown priority": {"entity": {}, "processor": import_orders, "priority": "urgent"},
        "lambda processor": {"entity": {}, "processor": lambda data: data},
        "unserializable entity": {"entity": {"when": object()}, "processor": import_orders},
        "hostile queue name": {"entity": {}, "processor": import_orders, "queue_name": "a:b"},
    }
    for label, kwargs in bad_calls.items():
        try:
            queue.enqueue(**kwargs)
        except (ValueError, TypeError, QueueSystemError) as exc:
            print(f"{label}: {type(exc).__name__}: {exc}")

    down = QueueConfig(redis_url="redis://127.0.0.1:1/0", connection_timeout=0.5)
    try:
        QueueManager(config=down).enqueue({"id": 1}, import_orders)
    except QueueUnavailableError as exc:
        print(f"Redis down: QueueUnavailableError: {exc}")
    finally:
        down.redis_client.close()


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s: %(message)s")
    enqueue_time_errors()

    queue.enqueue(
        entity={"supplier": "acme"},
        processor=import_orders,
        retry_config=QueueRetryConfig.fixed(delay=0.05, max_attempts=2),
    )
    # A name no process registered (e.g. code that was renamed since the item was queued).
    queue.enqueue(entity={"supplier": "globex"}, processor="legacy.jobs:import_orders")
    await QueueWorker(config=config, max_workers=2, burst=True, wait_scheduled=True).run()

    # Get queue status
    status = queue.get_queue_status()

    # Check failures and system errors
    failures_count = status.get("queue:failures", 0)
    system_errors_count = status.get("queue:system_errors", 0)

    print(f"Failed operations: {failures_count}")
    print(f"System errors: {system_errors_count}")

    # Each record keeps the reason, the attempt history and the original item.
    for key in ("queue:failures", "queue:system_errors"):
        for raw in config.redis_client.lrange(key, 0, -1):
            record = json.loads(raw)
            print(
                f"{key}: reason={record['reason']} processor={record['processor']} "
                f"runs={len(record['history'])} {record['error_type']}: {record['message']}"
            )
            print(f"  original entity: {record['envelope']['entity']}")
    config.redis_client.close()


if __name__ == "__main__":
    asyncio.run(main())
