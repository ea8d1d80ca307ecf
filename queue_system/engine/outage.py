"""RedisOutage: how a worker rides out Redis trouble — back off, log, go on.

Two kinds of failure, told apart because they call for different answers:

* **Redis unreachable** (connection refused or reset, a timeout, a server that is loading,
  busy with a script, read-only after a failover, out of memory): an outage. Logged once per
  outage; each operation retries on its own exponential backoff (50 ms doubling to 2 s), so
  one failing loop does not slow the others. Writes that record an item's outcome are
  repeated until Redis takes them. Only past a deadline do they give up (while stopping, or
  once Redis has been unreachable for ``give_up_after_s``, the burst-mode bound); the items
  are still leased then, so they return to their queues when the leases expire.
* **An error reply** (one of our scripts failed, a key holds the wrong type): a bug or a
  corrupt key, never an outage. Logged at ERROR every time with the operation and the
  script's name, reported to ``on_error_reply`` (the worker counts ``script_errors``) and
  retried on a slower backoff (0.5 s doubling to 10 s): loud, and never a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import redis

from queue_system.core.clock import Clock
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from queue_system.errors import QueueUnavailableError

logger = logging.getLogger("queue_system.worker")

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.05, 2.0  # between attempts while Redis is unreachable
ERROR_REPLY_BACKOFF_MIN_S, ERROR_REPLY_BACKOFF_MAX_S = 0.5, 10.0  # after an error reply

# Error replies that describe the server's state, not our command: they pass like an outage.
# (LOADING arrives as BusyLoadingError, a ConnectionError; BUSY and MISCONF have no class.)
_TRANSIENT_REPLY_TYPES: tuple[type[redis.ResponseError], ...] = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.NoScriptError,
)
_TRANSIENT_REPLY_CODES = ("BUSY ", "MISCONF ", "NOREPLICAS ", "MASTERDOWN ")
_SHA = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")  # Redis 6.2 writes "f_<sha>"


def is_error_reply(exc: BaseException) -> bool:
    """True for an error reply that a retry cannot cure by itself (a bug or a corrupt key)."""
    if not isinstance(exc, redis.ResponseError) or isinstance(exc, _TRANSIENT_REPLY_TYPES):
        return False
    return not str(exc).startswith(_TRANSIENT_REPLY_CODES)


@cache
def _scripts_by_sha() -> dict[str, str]:
    return {
        hashlib.sha1(script_source(name).encode()).hexdigest(): name  # noqa: S324 (script ids)
        for name in SCRIPT_NAMES
    }


def failed_script(exc: BaseException) -> str | None:
    """The name of our script an error reply came from (its sha is in the message), if any."""
    match = _SHA.search(str(exc))
    return _scripts_by_sha().get(match.group(0)) if match else None


class Backoff:
    """Exponential backoff: ``minimum`` doubling up to ``maximum`` seconds; reset on success."""

    def __init__(self, minimum: float = BACKOFF_MIN_S, maximum: float = BACKOFF_MAX_S) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._next = minimum

    def next(self) -> float:
        """The delay before the next attempt (and double the one after it)."""
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """An attempt succeeded: start again from ``minimum``."""
        self._next = self.minimum


class RedisOutage:
    """Backoff and logging of Redis trouble for one worker (used on its event loop only).

    Args:
        worker_id: names the worker in log records.
        clock: the worker's clock (monotonic time measures the outage).
        give_up_after_s: once Redis has been unreachable this long without a break,
            :meth:`wait` raises QueueUnavailableError (None: never; burst mode sets it).
        on_error_reply: called with the operation's name on every error reply.
    """

    def __init__(
        self,
        worker_id: str,
        clock: Clock,
        *,
        give_up_after_s: float | None = None,
        on_error_reply: Callable[[str], None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.clock = clock
        self.give_up_after_s = give_up_after_s
        self.on_error_reply = on_error_reply
        self.give_up_at = float("inf")  # set when the worker starts stopping
        self._down_since: float | None = None
        self._backoffs: dict[str, Backoff] = {}

    @property
    def down(self) -> bool:
        """True while Redis is unreachable (since the last failure, until the next success)."""
        return self._down_since is not None

    async def wait(
        self, exc: BaseException, operation: str = "redis", *, until: asyncio.Event | None = None
    ) -> None:
        """``operation`` failed with ``exc``: report it and back off before its next attempt.

        ``until`` cuts the backoff short when it is set (a stop request).

        Raises:
            QueueUnavailableError: Redis has been unreachable longer than ``give_up_after_s``.
        """
        if is_error_reply(exc):
            await self.sleep(self._error_reply(exc, operation), until=until)
            return
        now = self.clock.monotonic()
        if self._down_since is None:
            logger.error("worker %s: Redis unavailable (%s); retrying", self.worker_id, exc)
            self._down_since = now
        elif self.give_up_after_s is not None and now - self._down_since >= self.give_up_after_s:
            raise QueueUnavailableError(
                f"Redis unreachable for {now - self._down_since:.0f}s (last error: {exc}); "
                f"worker {self.worker_id} gave up"
            ) from exc
        await self.sleep(self._backoff(operation, BACKOFF_MIN_S, BACKOFF_MAX_S).next(), until=until)

    @staticmethod
    async def sleep(seconds: float, *, until: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``, or less if ``until`` is set meanwhile."""
        if until is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(asyncio.TimeoutError):  # not the builtin before 3.11
            await asyncio.wait_for(until.wait(), seconds)

    def _error_reply(self, exc: BaseException, operation: str) -> float:
        script = failed_script(exc)
        where = f"script {script}" if script else "a command"
        logger.error(
            "worker %s: %s (%s) failed with an error reply: %s. This is a bug or a corrupt "
            "key, not an outage; retrying with backoff",
            self.worker_id,
            where,
            operation,
            exc,
        )
        if self.on_error_reply is not None:
            self.on_error_reply(script or operation)
        backoff = self._backoff(
            f"{operation}!reply", ERROR_REPLY_BACKOFF_MIN_S, ERROR_REPLY_BACKOFF_MAX_S
        )
        return backoff.next()

    def _backoff(self, key: str, minimum: float, maximum: float) -> Backoff:
        backoff = self._backoffs.get(key)
        if backoff is None:
            backoff = self._backoffs[key] = Backoff(minimum, maximum)
        return backoff

    def recovered(self, operation: str = "redis") -> None:
        """``operation`` succeeded: reset its backoff and log the end of an outage."""
        for key in (operation, f"{operation}!reply"):
            backoff = self._backoffs.get(key)
            if backoff is not None:
                backoff.reset()
        if self._down_since is not None:
            logger.warning("worker %s: Redis is back", self.worker_id)
            self._down_since = None

    async def persist(self, write: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run ``write(*args, **kwargs)`` until Redis accepts it; None if it gave up."""
        operation = getattr(write, "__name__", "write")
        while True:
            try:
                result = await write(*args, **kwargs)
            except redis.RedisError as exc:
                if self.clock.monotonic() > self.give_up_at:
                    logger.error(
                        "worker %s gave up a write while stopping (%s); its items "
                        "return to their queues when their leases expire",
                        self.worker_id,
                        exc,
                    )
                    return None
                try:
                    await self.wait(exc, operation)
                except QueueUnavailableError as gave_up:
                    logger.error(
                        "worker %s gave up %s: %s; its items return to their queues "
                        "when their leases expire",
                        self.worker_id,
                        operation,
                        gave_up,
                    )
                    return None
                continue
            self.recovered(operation)
            return result
