"""RedisOutage: how a worker rides out Redis being unreachable — back off, log once, go on.

A worker never exits because Redis is down or frozen: each loop reports the error here and
waits (exponential backoff, 50 ms to 2 s), and writes that record an item's outcome are
repeated until Redis takes them. Only while stopping, past a deadline, does a write give up:
its items are still leased, so they return to their queues when the leases expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from queue_system.core.clock import Clock

logger = logging.getLogger("queue_system.worker")

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.05, 2.0  # between attempts while Redis is unreachable


class RedisOutage:
    """Backoff and once-per-outage logging for one worker."""

    def __init__(self, worker_id: str, clock: Clock) -> None:
        self.worker_id = worker_id
        self.clock = clock
        self.give_up_at = float("inf")  # set when the worker starts stopping
        self._down = False
        self._backoff = BACKOFF_MIN_S

    async def wait(self, exc: BaseException) -> None:
        """Redis failed: log it (once per outage) and back off before the next attempt."""
        if not self._down:
            if isinstance(exc, redis.ResponseError):  # Redis answered: not an outage
                logger.error("worker %s: Redis rejected a command (%s); this is a bug or a "
                             "misconfigured server, not an outage; retrying",
                             self.worker_id, exc)  # fmt: skip
            else:
                logger.error("worker %s: Redis unavailable (%s); retrying", self.worker_id, exc)
            self._down = True
            self._backoff = BACKOFF_MIN_S
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def recovered(self) -> None:
        """Redis answered: log the end of an outage."""
        if self._down:
            logger.warning("worker %s: Redis is back", self.worker_id)
            self._down = False

    async def persist(self, write: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run ``write(*args, **kwargs)`` until Redis accepts it; None if it gave up."""
        while True:
            try:
                result = await write(*args, **kwargs)
            except redis.RedisError as exc:
                if self.clock.monotonic() > self.give_up_at:
                    logger.error("worker %s gave up a write while stopping (%s); its items "
                                 "return to their queues when their leases expire",
                                 self.worker_id, exc)  # fmt: skip
                    return None
                await self.wait(exc)
                continue
            self.recovered()
            return result
