"""The reference's "Retry Configuration": the four configs as written, then short ones at work.

Run: REDIS_URL=redis://localhost:6379/0 python examples/retry_configs.py

The reference's delays (seconds to hours) are built and printed as written; the items that
actually run use the same factories with sub-second delays so the example ends quickly.
``max_attempts`` counts retries after the first run: an item runs at most 1 + max_attempts times.
"""

import asyncio
import os
from collections import Counter
from typing import Any

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker

runs: Counter[str] = Counter()


def show(title: str, retry_config: QueueRetryConfig) -> None:
    delays = ", ".join(f"{d:g}" for d in retry_config.delays or [])
    print(
        f"{title:<20} max_attempts={retry_config.max_attempts} delays=[{delays}] "
        f"timeout={retry_config.timeout} jitter={retry_config.jitter}"
    )


# --- The reference's configurations, as written ---------------------------------------------

# Default Exponential Backoff
retry_config = QueueRetryConfig()  # Uses exponential backoff (base=2, min=1s)
show("default", retry_config)

# Fixed Delay
retry_config = QueueRetryConfig.fixed(
    delay=30,  # 30-second delay between retries
    max_attempts=3,  # Maximum 3 retry attempts
    timeout=300,  # Stop retrying after 5 minutes
)
show("fixed", retry_config)

# Exponential Backoff
retry_config = QueueRetryConfig.exponential(
    base=2.0,  # Multiply delay by 2 each retry
    min_delay=1.0,  # Start with 1 second delay
    max_delay=60.0,  # Maximum 60 second delay
    max_attempts=5,  # Maximum 5 retry attempts
    timeout=3600,  # Stop retrying after 1 hour
)
show("exponential", retry_config)
print(f"  retry 3 waits {retry_config.get_delay_for_attempt(3):.2f}s (4s with +-10% jitter)")

# Custom Retry Schedule
retry_config = QueueRetryConfig.custom(
    delays=[60, 300, 1800, 7200],  # Custom delay schedule
    timeout=86400,  # Stop retrying after 1 day
)
show("custom", retry_config)
assert QueueRetryConfig.from_dict(retry_config.to_dict()) == retry_config  # stored in each item
print(f"  stored in each item as {retry_config.to_dict()}")


# --- The same factories with short delays, on a real queue ----------------------------------


def flaky(data: dict[str, Any]) -> str:
    """Fails the first ``data['failures']`` runs of each item (-1: every run)."""
    runs[data["label"]] += 1
    run = runs[data["label"]]
    if data["failures"] < 0 or run <= data["failures"]:
        raise ConnectionError(f"{data['label']}: run {run} failed")
    return f"ok on run {run}"


async def on_success(data: dict[str, Any]) -> None:
    label = data["entity"]["label"]
    print(f"{label}: succeeded after {data['attempts'] + 1} runs ({data['result']})")


async def on_failure(data: dict[str, Any]) -> None:
    label = data["entity"]["label"]
    print(f"{label}: gave up after {data['attempts']} runs: {data['error']}")


async def main() -> None:
    config = QueueConfig(redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    queue = QueueManager(config=config)
    cases = [
        # label, fail this many runs (-1: always), retry config
        ("fixed", 2, QueueRetryConfig.fixed(delay=0.1, max_attempts=3, timeout=300)),
        (
            "exponential",
            3,
            QueueRetryConfig.exponential(base=2.0, min_delay=0.05, max_delay=0.2, max_attempts=5),
        ),
        ("custom", -1, QueueRetryConfig.custom(delays=[0.05, 0.1], timeout=86400)),
        # The deadline wins: retry 2 would be due ~0.6s after the first run, past timeout=0.5.
        ("timeout", -1, QueueRetryConfig.fixed(delay=0.3, max_attempts=5, timeout=0.5)),
    ]
    for label, failures, retry_config in cases:
        queue.enqueue(
            entity={"label": label, "failures": failures},
            processor=flaky,
            retry_config=retry_config,
            on_success=on_success,
            on_failure=on_failure,
        )
    await QueueWorker(config=config, max_workers=4, burst=True, wait_scheduled=True).run()
    status = queue.get_queue_status()
    print(f"failures queue holds {status['queue:failures']} items")
    config.redis_client.close()


if __name__ == "__main__":
    asyncio.run(main())
