"""Running one claimed item: decode and resolve it, then call its processor with a timeout.

Sync processors and callbacks run in the worker's thread pool with a copy of the caller's
``contextvars`` context; async ones run on the event loop. A timeout stops the *wait*: an
async processor is cancelled, but a sync one cannot be interrupted and runs on in its thread
until it returns (its result is then discarded).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from queue_system.core.envelope import decode_envelope, envelope_summary
from queue_system.core.registry import CallableRegistry
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.core.types import Envelope
from queue_system.errors import DecodeError

_HAS_ASYNCIO_TIMEOUT = sys.version_info >= (3, 11)


@dataclass(frozen=True)
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
    return RunnableItem(envelope, processor, on_success, on_failure, retry, timeout or work_timeout)


def _resolve_optional(registry: CallableRegistry, name: str | None) -> Callable[..., Any] | None:
    return registry.resolve(name) if name else None


async def call_with_timeout(
    fn: Callable[..., Any], arg: Any, timeout_s: float, executor: Executor
) -> Any:
    """``fn(arg)`` on the loop (async) or in ``executor`` (sync), bounded by ``timeout_s``.

    Raises the builtin ``TimeoutError("processor exceeded its ...s timeout")`` at the
    deadline; a ``TimeoutError`` the function raises itself passes through unchanged.
    """
    if inspect.iscoroutinefunction(fn):
        return await _bounded(fn(arg), timeout_s)
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(executor, functools.partial(context.run, fn, arg))
    result = await _bounded(future, timeout_s)
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
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        raise TimeoutError(f"processor exceeded its {timeout_s}s timeout")
    return task.result()
