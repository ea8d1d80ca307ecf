"""Supervision of a worker's background loops: no error ends a loop silently.

Every background loop (fetcher, acker, maintainer, heartbeat, loop ticker) runs under
:func:`supervise`:

* a Redis error that escaped the loop is handed to the worker's RedisOutage (an outage is
  backed off and logged once, an error reply is logged at ERROR and counted), then the loop
  starts again;
* any other error is logged with its traceback and the loop starts again after a backoff
  (0.1 s doubling to 5 s);
* a loop that cannot resume stops the worker, loudly: ``on_fatal`` is called, the worker
  stops and its ``run()`` raises. That is a loop failing MAX_CONSECUTIVE_FAILURES times in a
  row, each time within HEALTHY_RUN_S of its restart (WorkerLoopError), or Redis unreachable
  past the worker's ``outage_limit`` (QueueUnavailableError). Never a zombie that heartbeats
  but no longer fetches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis

from queue_system.core.clock import Clock
from queue_system.engine.outage import Backoff, RedisOutage
from queue_system.errors import QueueUnavailableError, WorkerLoopError

logger = logging.getLogger("queue_system.worker")

CRASH_BACKOFF_MIN_S, CRASH_BACKOFF_MAX_S = 0.1, 5.0  # before restarting a loop that raised
MAX_CONSECUTIVE_FAILURES = 5  # a loop failing this often in a row stops the worker
HEALTHY_RUN_S = 60.0  # a loop that ran this long since its restart starts a new count


async def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    outage: RedisOutage,
    clock: Clock,
    on_fatal: Callable[[BaseException], None],
    stopping: asyncio.Event | None = None,
) -> None:
    """Run ``body()`` until it returns; restart it after any error (see the module doc).

    ``stopping`` cuts a backoff short (the fetcher must notice a stop at once).
    """
    failures = 0
    backoff = Backoff(CRASH_BACKOFF_MIN_S, CRASH_BACKOFF_MAX_S)
    while stopping is None or not stopping.is_set():
        started = clock.monotonic()
        try:
            await body()
            return
        except QueueUnavailableError as exc:
            on_fatal(exc)
            return
        except redis.RedisError as exc:
            try:
                await outage.wait(exc, name, until=stopping)
            except QueueUnavailableError as gave_up:
                on_fatal(gave_up)
                return
            continue
        except Exception as exc:
            if clock.monotonic() - started >= HEALTHY_RUN_S:
                failures = 0
                backoff.reset()
            failures += 1
            logger.error(
                "the %s loop failed (%d in a row); restarting it", name, failures, exc_info=exc
            )
            if failures >= MAX_CONSECUTIVE_FAILURES:
                on_fatal(
                    WorkerLoopError(
                        f"the {name} loop failed {failures} times in a row "
                        f"(last: {type(exc).__name__}: {exc}); the worker stopped"
                    )
                )
                return
            await outage.sleep(backoff.next(), until=stopping)
