"""The worker's side of job control: the job context around each processor call, cancel
requests reaching running items, and progress writes.

How a worker hears of a cancel (see ``cancel.lua``): the request sets a durable mark on the
item's status record and publishes the operation id on the ``cancels`` channel. Each worker
keeps one subscription (:meth:`RunningJobs.watch`): a message reaches it within milliseconds
and costs nothing while nobody cancels (no polling, nothing on the claim/ack path). A message
is lost while the subscription is down: the worker also reads the marks of the items it runs
every ``MARK_CHECK_S`` (only while some run), and the fenced finishes (``ack.lua``,
``schedule_retry.lua``) read the mark too, so a missed message only delays the interruption:
the outcome still ends cancelled.

On a request, an async processor's task is cancelled (that CancelledError is ours and becomes
:class:`JobCancelled`, not a failure); a sync one sees ``current_job().cancelled`` become True
and its result is discarded. A request for an item this worker has claimed but not started
is remembered (bounded), and the item then ends cancelled without running.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from queue_system.core.envelope import as_text
from queue_system.core.job_context import JobContext, enter_job, leave_job
from queue_system.core.records import callback_data
from queue_system.core.types import Envelope
from queue_system.worker.store import ClaimedItem, WorkerBroker

logger = logging.getLogger("queue_system.worker")

_HAS_UNCANCEL = sys.version_info >= (3, 11)
REMEMBERED_REQUESTS = 1024  # cancel requests kept for items not (yet) running here
#: How often a worker reads the cancel marks of its running items, in case a published request
#: was missed (its subscription was reconnecting): the backstop, not the usual path.
MARK_CHECK_S = 5.0
PROGRESS_FLUSH_S = 1.0
ASYNC_CACHE_MAX = 10_000  # longest wait for the last progress write before the outcome


class JobCancelled(Exception):
    """The running item's cancel was requested: it ends ``cancelled`` (not a failure)."""


class _Running:
    """One item running here (a slots class: one is built per item on the hot path)."""

    __slots__ = ("cancelled_task", "job", "progress", "task", "token", "writing")

    def __init__(self, job: JobContext, token: str, task: asyncio.Task[Any] | None) -> None:
        self.job = job
        self.token = token
        self.task = task  # set for async processors: cancelled on a request
        self.cancelled_task = False
        self.progress: str | None = None  # the latest value not yet written
        self.writing: asyncio.Task[None] | None = None  # the write under way


class RunningJobs:
    """The items this worker runs, by operation id (use on the worker's event loop)."""

    def __init__(self, broker: WorkerBroker) -> None:
        self.broker = broker
        self._clock = broker.config.clock
        self._running: dict[str, _Running] = {}
        self._requested: OrderedDict[str, None] = OrderedDict()
        self._writes: set[asyncio.Task[None]] = set()  # progress writes under way
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker's (bound on first use)
        self._async_fns: dict[Any, bool] = {}  # processor -> is a coroutine function

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def is_async(self, fn: Any) -> bool:
        """``inspect.iscoroutinefunction(fn)``, remembered per processor (hot path)."""
        known = self._async_fns.get(fn)
        if known is None:
            known = self._async_fns[fn] = inspect.iscoroutinefunction(fn)
            if len(self._async_fns) > ASYNC_CACHE_MAX:  # processors are few; stay bounded
                self._async_fns.clear()
        return known

    async def call(
        self,
        item: ClaimedItem,
        envelope: Envelope,
        *,
        timeout_s: float,
        is_async: bool,
        run: Callable[[], Awaitable[Any]],
    ) -> Any:
        """``await run()`` as the job of ``item`` (``current_job()`` inside); raises
        :class:`JobCancelled` when its cancel was requested before or while it ran."""
        loop = self._loop or self._bind_loop()
        op_id = envelope["id"]
        job = JobContext(
            envelope,
            self._clock.time() + timeout_s,
            lambda text: _threadsafe(loop, self._progress, running, text),
        )
        running = _Running(job, item.token, asyncio.current_task(loop) if is_async else None)
        if self._requested.pop(op_id, "no") is None:  # asked before it started here
            raise JobCancelled(op_id)
        self._running[op_id] = running
        context = enter_job(running.job)
        try:
            result = await run()
        except asyncio.CancelledError:
            if not self._ours(running):
                raise  # the worker's stop
            raise JobCancelled(op_id) from None
        except Exception as exc:
            self._ours(running)
            if running.writing is not None:
                await self._progress_written(running)
            if running.job.cancelled:  # e.g. a sync processor that stopped on the flag
                raise JobCancelled(op_id) from exc
            raise
        finally:
            leave_job(context)
            del self._running[op_id]
        if running.cancelled_task:
            self._ours(running)  # a processor that swallowed our CancelledError
        if running.writing is not None:
            await self._progress_written(running)
        if running.job.cancelled:
            raise JobCancelled(op_id)  # its result is discarded
        return result

    @staticmethod
    def _ours(running: _Running) -> bool:
        """Undo our task.cancel() (if any); True when no other cancellation is pending."""
        if not running.cancelled_task or running.task is None:
            return False
        running.cancelled_task = False
        if not _HAS_UNCANCEL:  # 3.10 cannot tell a simultaneous stop apart: take it as ours
            return True
        remaining: int = running.task.uncancel()  # type: ignore[attr-defined,unused-ignore]
        return remaining == 0

    def request_cancel(self, operation_id: str) -> bool:
        """A cancel of ``operation_id`` was requested; True if it runs here (now stopped or
        flagged), else it is remembered in case this worker starts it later."""
        running = self._running.get(operation_id)
        if running is None:
            self._requested[operation_id] = None
            while len(self._requested) > REMEMBERED_REQUESTS:
                self._requested.popitem(last=False)
            return False
        if not running.job.cancelled:
            running.job.request_cancel()
            if running.task is not None and not running.cancelled_task:
                running.cancelled_task = True
                running.task.cancel()
            logger.info(
                "operation %s: cancel requested; stopping it",
                operation_id,
                extra={"operation_id": operation_id},
            )
        return True

    async def watch(self) -> None:
        """Listen for cancel requests until cancelled (a supervised worker loop)."""
        pubsub = self.broker.client.pubsub()
        try:
            await pubsub.subscribe(self.broker.keys.cancels)
            while True:
                # Requests published while we were not subscribed (redis-py re-subscribes by
                # itself after a reconnect): read the durable marks of the running items now
                # and then. Nothing is read while nothing runs.
                await self._read_marks()
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=MARK_CHECK_S
                )
                while message is not None:
                    if message.get("type") == "message":
                        self.request_cancel(as_text(message["data"]))
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _read_marks(self) -> None:
        running = [op_id for op_id, r in self._running.items() if not r.job.cancelled]
        if running:
            marks = await self.broker.cancel_marks(running)
            for op_id, marked in zip(running, marks, strict=True):
                if marked:
                    self.request_cancel(op_id)

    def _progress(self, running: _Running, text: str) -> None:
        """On the loop: write ``text`` soon; while a write is under way, only the latest."""
        running.progress = text
        if running.writing is None:
            task = asyncio.get_running_loop().create_task(self._write_progress(running))
            running.writing = task
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    @staticmethod
    async def _progress_written(running: _Running) -> None:
        """Let the last progress land before the outcome (which ends the lease, after which
        a progress write is dropped); bounded, and free when no progress was reported."""
        if running.writing is not None:
            await asyncio.wait({running.writing}, timeout=PROGRESS_FLUSH_S)

    async def _write_progress(self, running: _Running) -> None:
        try:
            while running.progress is not None:
                text, running.progress = running.progress, None
                try:
                    await self.broker.write_progress(running.token, running.job.operation_id, text)
                except Exception as exc:  # progress is best effort: never fail the item
                    logger.debug(
                        "operation %s: progress not written: %s", running.job.operation_id, exc
                    )
        finally:
            running.writing = None


def cancelled_data(envelope: Envelope) -> dict[str, Any]:
    """The ``on_failure`` data of a cancelled item (``reason``: ``"cancelled"``)."""
    return callback_data(
        envelope, reason="cancelled", error="cancelled", error_type="Cancelled", history=[]
    )


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop`` from any thread (from the loop itself: at once)."""
    try:
        running_loop = asyncio.get_running_loop()
    except RuntimeError:
        running_loop = None
    if running_loop is loop:
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)
