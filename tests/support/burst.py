"""run_burst: drain a namespace with a burst worker, bounded in time."""

from __future__ import annotations

import asyncio
from typing import Any

from queue_system import QueueConfig, QueueWorker

BURST_TIMEOUT_S = 30.0


def run_burst(config: QueueConfig, **kwargs: Any) -> QueueWorker:
    """Run a burst worker until every item is terminal (bounded by BURST_TIMEOUT_S); it waits
    for scheduled retries too (``wait_scheduled=True`` unless told otherwise)."""
    kwargs.setdefault("wait_scheduled", True)
    worker = QueueWorker(config, burst=True, **kwargs)

    async def main() -> None:
        await asyncio.wait_for(worker.run(), BURST_TIMEOUT_S)

    asyncio.run(main())
    return worker
