"""The reference's "Monitoring Queue Status", "Metrics and Monitoring" and the metric log lines.

Run: REDIS_URL=redis://localhost:6379/0 python examples/monitoring.py

Queue status is read before and after a burst worker drains the queues; the metrics snippet is
the reference's, as written; the metric records are JSON lines (here on stdout) ready for
OpenSearch, filtered there on ``"message": "Queue metric update"``.
"""

import asyncio
import os
import sys
from typing import Any

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.logs import setup_json_logging

config = QueueConfig(redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
queue = QueueManager(config=config)


async def process_data(data: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "result": data}


def send_email(data: dict[str, Any]) -> None:
    if "@" not in data["to"]:
        raise ValueError(f"invalid address {data['to']!r}")


async def main() -> None:
    for i in range(5):
        queue.enqueue(entity={"id": i}, processor=process_data, priority="high")
    queue.enqueue_batch(
        [{"to": f"user{i}@example.com"} for i in range(9)] + [{"to": "nobody"}],
        processor=send_email,
        retry_config=QueueRetryConfig(max_attempts=0),  # a bad address stays bad: no retries
    )

    # Monitoring Queue Status, as written
    status = queue.get_queue_status()
    print(status)  # {'queue:high:process_data': 5, 'queue:normal:send_email': 10, ...}

    await QueueWorker(config=config, max_workers=4, burst=True).run()
    print(f"After the worker: {queue.get_queue_status()}")

    # Get current metrics
    metrics = config.get_metrics()

    # Check success rate
    success_rate = metrics.get("success_rate", 0)
    print(f"Success rate: {success_rate:.1f}%")

    # Check processing volumes
    processed = metrics.get("processed", 0)
    enqueued = metrics.get("enqueued", 0)
    failed = metrics.get("failed", 0)
    print(f"Processed: {processed}/{enqueued} (Failed: {failed})")

    # Check processing times
    avg_process_time = metrics.get("avg_process_time", 0)
    print(f"Average processing time: {avg_process_time:.2f}ms")

    for name, priorities in metrics["queues"].items():
        for priority, row in priorities.items():
            if row["depth"] or row["processed"]:
                print(
                    f"  {name}:{priority} depth={row['depth']} processed={row['processed']} "
                    f"avg_wait_ms={row['avg_wait_ms']:.1f}"
                )

    # Event-driven metric records as JSON lines: an application opts in once.
    setup_json_logging("INFO", stream=sys.stdout, logger_name="queue_system.metrics")
    # When a metric changes significantly
    config.update_metric("processed", 1)  # This will log when crossing thresholds
    # Force logging for important updates
    current_rate = success_rate
    config.update_metric("success_rate", current_rate, force_log=True)
    config.redis_client.close()


if __name__ == "__main__":
    asyncio.run(main())
