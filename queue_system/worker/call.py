"""Running one claimed item: decode and resolve it, then call its processor with a timeout.

Sync processors and callbacks run in threads (:class:`ThreadSlots`) with a copy of the
caller's ``contextvars`` context; async ones run on the event loop. A timeout stops the
*wait*: an async processor is cancelled, but a sync one cannot be interrupted and runs on in
its thread until it returns (its result is then discarded). That thread stays taken until
then, so later sync items wait for a free thread; their timeout starts when they start.

A ``CancelledError`` that the worker did not request (the processor awaited something that
another party cancelled) is the processor's failure: :class:`ProcessorCancelledError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

from queue_system.core.envelope import decode_envelope, envelope_summary
from queue_system.core.registry import CallableRegistry
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.core.types import Envelope
from queue_system.errors import DecodeError

Function: TypeAlias = Callable[..., Any]
"""A processor or callback, run by a slot with one argument (the entity, or a data dict)."""
OnStart: TypeAlias = Callable[[], None] | None
"""Run by a slot just before the function, once it is handed over (marks the item started)."""

_HAS_ASYNCIO_TIMEOUT = sys.version_info >= (3, 11)


@dataclass(frozen=True, kw_only=True)
class RunnableItem:
    """A decoded item whose processor and callbacks this worker is allowed to run."""

    envelope: Envelope
    processor: Callable[..., Any]
    on_success: Callable[..., Any] | None
    on_failure: Callable[..., Any] | None
    retry: QueueRetryConfig
    timeout_s: float


class InvalidItem(Exception):
    """An item that cannot be run; ``reason`` is the short code stored in system_errors."""

    def __init__(self, reason: str, message: str, envelope: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.envelope = envelope


class ProcessorCancelledError(Exception):
    """A processor raised CancelledError that the worker did not request: its failure."""


def prepare(raw: bytes, registry: CallableRegistry, work_timeout: float) -> RunnableItem:
    """Decode and resolve an item; raises InvalidItem (never runs anything)."""
    try:
        envelope = decode_envelope(raw)
    except DecodeError as exc:
        raise InvalidItem("undecodable", str(exc), envelope_summary(raw)) from exc
    as_dict: dict[str, Any] = dict(envelope)
    try:
        processor = registry.resolve(envelope["processor"])
        on_success = _resolve_optional(registry, envelope.get("on_success"))
        on_failure = _resolve_optional(registry, envelope.get("on_failure"))
    except Exception as exc:  # UnknownProcessorError, or an import that raised
        raise InvalidItem("unknown_processor", str(exc), as_dict) from exc
    try:
        retry = QueueRetryConfig.from_dict(envelope["retry"])
        timeout = envelope.get("timeout")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
    except (TypeError, ValueError) as exc:
        raise InvalidItem("invalid_options", str(exc), as_dict) from exc
    return RunnableItem(
        envelope=envelope,
        processor=processor,
        on_success=on_success,
        on_failure=on_failure,
        retry=retry,
        timeout_s=timeout or work_timeout,
    )


def _resolve_optional(registry: CallableRegistry, name: str | None) -> Callable[..., Any] | None:
    return registry.resolve(name) if name else None


class ThreadSlots:
    """A thread pool whose size is its capacity: a thread counts as taken until the function
    it runs really returns, even after its caller stopped waiting (a timeout, a stop).

    Use it from one event loop (created in the worker's ``start``).
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._pool = ThreadPoolExecutor(size, thread_name_prefix=name)
        self._free = asyncio.Semaphore(size)
        self.overdue = 0  # threads still running a function nobody waits for any more

    async def run(self, fn: Function, arg: Any, timeout_s: float, on_start: OnStart = None) -> Any:
        """``fn(arg)`` in a thread, bounded by ``timeout_s``.

        Waits (unbounded) for a free thread first, so the function starts as soon as it is
        handed over and the timeout runs from then; ``on_start`` runs in the thread, first.
        The thread wakes the loop once per call, when the function returns (that one
        callback answers the caller and frees the slot): no-op ``def`` processors drain at
        the pace of the loop, not of cross-thread hand-offs.
        """
        loop = asyncio.get_running_loop()
        await self._free.acquire()
        answer: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()
        # Read and written on the loop only, so they cannot race the thread's end.
        abandoned, settled = [False], [False]

        def settle(result: Any, error: BaseException | None) -> None:  # on the loop
            settled[0] = True
            if abandoned[0]:
                self.overdue -= 1
            self._free.release()
            if answer.done():  # the caller stopped waiting (a timeout, a stop)
                return
            if error is None:
                answer.set_result(result)
            else:
                answer.set_exception(error)

        def target() -> None:  # in the thread
            try:
                if on_start is not None:
                    on_start()
                result, error = context.run(fn, arg), None
            except BaseException as exc:  # handed to the caller as the run's outcome
                result, error = None, exc
            # A closed loop (RuntimeError) means the worker is gone, with its slots.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, error)

        try:
            submitted = self._pool.submit(target)
        except BaseException:
            self._free.release()
            raise
        try:
            return await _bounded(answer, timeout_s)
        except BaseException:
            if submitted.cancel():  # never started (a stop): its slot is free again
                self._free.release()
            elif not settled[0]:
                abandoned[0] = True  # runs on in its thread; still counts as taken
                self.overdue += 1
            raise

    def shutdown(self) -> None:
        """Start no more functions; threads still running end on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def call_with_timeout(
    fn: Callable[..., Any],
    arg: Any,
    timeout_s: float,
    threads: ThreadSlots,
    on_start: Callable[[], None] | None = None,
) -> Any:
    """``fn(arg)`` on the loop (async) or in ``threads`` (sync), bounded by ``timeout_s``.

    ``on_start`` is called when ``fn`` really starts (in its thread for a sync ``fn``).
    Raises the builtin ``TimeoutError("processor exceeded its ...s timeout")`` at the
    deadline (a ``TimeoutError`` the function raises itself passes through unchanged), and
    :class:`ProcessorCancelledError` for a CancelledError the worker did not request.
    """
    if inspect.iscoroutinefunction(fn):
        if on_start is not None:
            on_start()
        return await _bounded(fn(arg), timeout_s)
    result = await threads.run(fn, arg, timeout_s, on_start)
    if inspect.isawaitable(result):
        return await _bounded(result, timeout_s)
    return result


async def _bounded(awaitable: Awaitable[Any], timeout_s: float) -> Any:
    if _HAS_ASYNCIO_TIMEOUT:  # 3.11+: no extra task per call, and we know who timed out
        try:
            async with asyncio.timeout(timeout_s) as scope:  # type: ignore[attr-defined,unused-ignore]
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise TimeoutError(f"processor exceeded its {timeout_s}s timeout") from None
            raise
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():  # type: ignore[attr-defined,unused-ignore]
                raise  # the worker cancelled this run (stop): not the processor's doing
            raise _not_requested() from exc
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()  # the worker cancelled this run (stop): cancel the processor with it
        raise
    if not done:
        task.cancel()
        raise TimeoutError(f"processor exceeded its {timeout_s}s timeout")
    try:
        return task.result()
    except asyncio.CancelledError as exc:  # the processor's own: this task was not cancelled
        raise _not_requested() from exc


def _not_requested() -> ProcessorCancelledError:
    return ProcessorCancelledError(
        "the processor raised CancelledError that the worker did not request "
        "(it awaited something that another party cancelled)"
    )
