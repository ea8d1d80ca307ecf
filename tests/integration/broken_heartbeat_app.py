"""An application whose worker has a bug: every heartbeat raises a non-Redis error.

``queue-system worker tests.integration.broken_heartbeat_app:config`` must then stop and exit
1 with one line, instead of running on as a zombie (test_supervised_loops.py). Reads the
server and prefix from ``CLI_APP_REDIS_URL`` / ``CLI_APP_PREFIX``.
"""

from __future__ import annotations

import os
from typing import Any

from queue_system import QueueConfig
from queue_system.worker.store import WorkerBroker

config = QueueConfig(
    redis_url=os.environ.get("CLI_APP_REDIS_URL"),
    queue_prefix=os.environ.get("CLI_APP_PREFIX", "queue:"),
)


async def _broken_heartbeat(self: WorkerBroker, record: Any, ttl_s: float) -> None:
    raise RuntimeError("a bug in the heartbeat")


WorkerBroker.heartbeat = _broken_heartbeat  # type: ignore[method-assign]
