"""StartMarks: "this item's processor is about to run", written to Redis before it runs.

Only a started item's lease expiry counts toward the crash-loop guard (recover.lua), so the
mark must be stored before the processor is called. Marks of items starting in the same moment
share one call (``start.lua``), or ride along with an ack or claim that goes out meanwhile:
that call takes the pending batch with :meth:`StartMarks.take` and passes it to :func:`carry`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions

T = TypeVar("T")


class StartBatch:
    """Tokens starting in the same moment, and the executors waiting for their mark."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.waiters: list[asyncio.Future[None]] = []

    def settle(self, error: BaseException | None = None) -> None:
        """Wake every waiter: done, or failed with ``error``."""
        if isinstance(error, asyncio.CancelledError):
            # The call that carried the marks (an ack, a claim) was cancelled, not the
            # executors waiting for them: they get an error their writer retries.
            error = redis.exceptions.ConnectionError("the call carrying start marks was cancelled")
        for waiter in self.waiters:
            if waiter.done():  # its executor was cancelled meanwhile
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class StartMarks:
    """Batches start marks for one worker; ``send(tokens)`` writes a batch alone."""

    def __init__(self, send: Callable[[list[str]], Awaitable[Any]]) -> None:
        self._send = send
        self._pending: StartBatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def mark(self, token: str) -> None:
        """Return once ``token``'s mark is stored; raises what the carrying call raised."""
        loop = asyncio.get_running_loop()
        batch = self._pending
        if batch is None:
            batch = self._pending = StartBatch()
            # Runs on the next turn of the loop: executors starting in this one join the batch.
            task = loop.create_task(self._send_alone(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiter: asyncio.Future[None] = loop.create_future()
        batch.tokens.append(token)
        batch.waiters.append(waiter)
        await waiter

    def take(self) -> StartBatch | None:
        """The pending batch, for a call that goes out now to carry (see :func:`carry`)."""
        batch, self._pending = self._pending, None
        return batch

    async def _send_alone(self, batch: StartBatch) -> None:
        if self._pending is not batch:  # a call sent in the meantime carried it
            return
        self._pending = None
        with contextlib.suppress(Exception):  # the batch's waiters get the error
            await carry(batch, self._send(batch.tokens))


async def carry(batch: StartBatch | None, call: Awaitable[T]) -> T:
    """Await ``call``, which also writes ``batch``'s marks, then wake the batch's waiters."""
    if batch is None:
        return await call
    try:
        result = await call
    except BaseException as exc:
        batch.settle(exc)
        raise
    batch.settle()
    return result
