"""A worker's ``on_success`` / ``on_failure`` callbacks: run in the background (sync ones in
their own thread pool, so a slow callback never takes a processor's thread), each attempt
bounded by the work timeout, retried with backoff while they raise (the reference wraps its
``_execute_callback`` in ``@retry_with_backoff``). One that keeps failing is logged with its
operation id and counted (``callback_errors``); it never blocks the worker or its items.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from queue_system.config import QueueConfig
from queue_system.resilience.retry import retry_with_backoff
from queue_system.worker.call import ThreadSlots, call_with_timeout

logger = logging.getLogger("queue_system.worker")

CALLBACK_RETRIES = 2  # a failing on_success / on_failure runs at most 3 times in all
CALLBACK_BASE_DELAY_S = 0.1  # before its first retry (plus up to 0.1 s jitter); doubles
CALLBACK_MAX_DELAY_S = 1.0  # cap of one wait between callback attempts


class Callbacks:
    """The callbacks one worker runs (use it on the worker's event loop only).

    Args:
        config: the worker's config (its metrics count callbacks that gave up).
        threads: the thread pool of sync callbacks.
        work_timeout: seconds one attempt may run.
    """

    def __init__(self, *, config: QueueConfig, threads: ThreadSlots, work_timeout: float) -> None:
        self.config = config
        self.threads = threads
        self.work_timeout = work_timeout
        self.tasks: set[asyncio.Task[None]] = set()  # running now: stop() waits for them
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests: faster

    def spawn(self, fn: Callable[..., Any], data: dict[str, Any]) -> None:
        """Run ``fn(data)`` in the background (tracked in :attr:`tasks`)."""
        task = asyncio.get_running_loop().create_task(self._run(fn, data))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, fn: Callable[..., Any], data: dict[str, Any]) -> None:
        retried = retry_with_backoff(
            max_retries=CALLBACK_RETRIES,
            base_delay=CALLBACK_BASE_DELAY_S,
            max_delay=CALLBACK_MAX_DELAY_S,
            sleep=self.sleep,
        )(call_with_timeout)
        op_id = data.get("operation_id")
        try:
            await retried(fn, data, self.work_timeout, self.threads)
        except Exception:
            logger.exception(
                "callback %s failed %d times for operation %s; giving up",
                getattr(fn, "__qualname__", fn),
                CALLBACK_RETRIES + 1,
                op_id,
                extra={"operation_id": op_id},
            )
            self.config.metrics.update(
                "callback_errors",
                1,
                queue=data.get("queue_name"),
                priority=data.get("priority"),
                processor=data.get("processor"),
                operation_id=op_id,
            )
