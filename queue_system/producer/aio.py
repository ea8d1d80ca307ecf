"""AsyncQueueManager: the producer API for asyncio code; the awaited twin of QueueManager."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio
from redis.commands.core import AsyncScript

from queue_system.config import QueueConfig
from queue_system.core import types
from queue_system.engine.plans import Plan, run_async
from queue_system.engine.scripts import Scripts
from queue_system.ops import job_control, reads
from queue_system.ops.health import system_health
from queue_system.producer import log_context as logged
from queue_system.producer.hooks import before_enqueue_async
from queue_system.producer.plan import draft_enqueue_batch
from queue_system.producer.purge import PurgeProgress
from queue_system.producer.shell import enqueue_call, redis_errors, signature_of
from queue_system.resilience import try_catch

T = TypeVar("T")


class AsyncQueueManager:
    """Same methods as :class:`QueueManager`, awaited, so an event loop is never blocked.

    Its asyncio client is created on first use inside the running loop; call
    :meth:`aclose` when done (e.g. in a FastAPI shutdown handler). Failures are logged on
    ``queue_system.producer.aio`` as :class:`QueueManager` logs them.
    """

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self._client: redis.asyncio.Redis | None = None
        self._scripts: Scripts[AsyncScript] | None = None
        self._guard = config.guard

    def _connected(self) -> tuple[redis.asyncio.Redis, Scripts[AsyncScript]]:
        if self._client is None or self._scripts is None:
            self._client = self.config.make_async_client()
            self._scripts = self.config.durable(Scripts.register(self._client))
        return self._client, self._scripts

    @try_catch(context=logged.enqueue_context, caller_errors=logged.CALLER_ERRORS)
    @signature_of(enqueue_call)
    async def enqueue(self, *args: Any, **kwargs: Any) -> types.EnqueueResult:
        """See :meth:`QueueManager.enqueue`."""
        request = enqueue_call(self.config, *args, **kwargs)
        call = request.script_call(await before_enqueue_async(self.config.hooks(), request.draft))
        _, scripts = self._connected()
        with redis_errors(), call.errors:
            answer = await self._guard.call_async(
                getattr(scripts, call.script), keys=call.keys, args=call.args
            )
        return call.read(answer)

    @try_catch(context=logged.enqueue_batch_context, caller_errors=logged.CALLER_ERRORS)
    async def enqueue_batch(
        self, entities: Sequence[Any], processor: types.CallableRef, **kwargs: Any
    ) -> list[types.EnqueueResult]:
        """See :meth:`QueueManager.enqueue_batch`."""
        started = self.config.clock.monotonic()
        draft = draft_enqueue_batch(self.config, entities, processor, **kwargs)
        if draft is None:
            return []
        plan = await before_enqueue_async(self.config.hooks(), draft)
        _, scripts = self._connected()
        with redis_errors():
            answer = await self._guard.call_async(scripts.enqueue, keys=plan.keys, args=plan.args)
        return plan.interpret(answer, self.config, started)

    @try_catch(caller_errors=logged.CALLER_ERRORS)
    async def get_queue_status(self) -> types.QueueStatus:
        """See :meth:`QueueManager.get_queue_status`."""
        return await self._read(lambda: reads.read_queue_status(self.config.keys))

    @try_catch(context=logged.operation_context, caller_errors=logged.CALLER_ERRORS)
    async def get_operation(self, operation_id: str) -> types.OperationInfo | None:
        """See :meth:`QueueManager.get_operation`."""
        return await self._read(lambda: reads.read_operation(self.config.keys, operation_id))

    async def get_system_health(self) -> types.HealthSnapshot:
        """See :meth:`QueueManager.get_system_health` (runs in a thread: it has its own
        short-timeout client)."""
        return await asyncio.to_thread(system_health, self.config)

    @try_catch(caller_errors=logged.CALLER_ERRORS)
    async def get_workers(self) -> list[types.WorkerInfo]:
        """See :meth:`QueueManager.get_workers`."""
        return await self._read(lambda: reads.read_workers(self.config.keys))

    async def _read(self, make_plan: Callable[[], Plan[T]]) -> T:
        """Run a fresh read plan under the breaker (a retry starts the plan again)."""
        client, scripts = self._connected()

        async def run() -> T:
            return await run_async(client, scripts, make_plan())

        with redis_errors():
            return await self._guard.call_async(run)

    @try_catch(context=logged.purge_context, caller_errors=logged.CALLER_ERRORS)
    async def purge_queue(self, queue_name: str, priority: str = "normal") -> int:
        """See :meth:`QueueManager.purge_queue`."""
        key = self.config.get_queue_key(queue_name, priority)
        client, scripts = self._connected()
        with redis_errors():
            progress = PurgeProgress(left=int(await self._guard.call_async(client.llen, key)))
            while count := progress.next_read():
                items = await self._guard.call_async(client.lrange, key, -count, -1)
                if not items:
                    break
                keys, args = progress.plan(self.config, key, items)
                removed = await self._guard.call_async(scripts.purge, keys=keys, args=args)
                progress.removed(int(removed))
        return progress.purged

    @try_catch(context=logged.operation_context, caller_errors=logged.CALLER_ERRORS)
    async def cancel(self, operation_id: str) -> types.CancelStatus:
        """See :meth:`QueueManager.cancel`."""
        nonce = job_control.cancel_nonce()  # the same for a retry of the plan
        return await self._read(
            lambda: job_control.cancel_operation(self.config, operation_id, nonce)
        )

    async def wait_for(self, operation_id: str, timeout: float = 30.0) -> Any:
        """See :meth:`QueueManager.wait_for` (awaits; the event loop is never blocked)."""
        record = await self._wait(operation_id, timeout)
        return job_control.outcome(operation_id, record, timeout)  # raises the typed outcome errors

    async def _wait(self, operation_id: str, timeout: float) -> Any:
        """See :meth:`QueueManager._wait`."""
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        client, scripts = self._connected()
        keys = self.config.keys
        status_key, done_key = [keys.operation(operation_id)], keys.done(operation_id)
        deadline = time.monotonic() + timeout
        with redis_errors():
            record = await self._guard.call_async(scripts.wait_register, keys=status_key, args=[1])
            while not job_control.is_final(record):
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # uncount this waiter, and read the record a last time
                    return await self._guard.call_async(
                        scripts.wait_register, keys=status_key, args=[-1]
                    )
                block = job_control.wait_chunk(self.config, remaining)
                if await self._guard.call_async(client.blpop, [done_key], timeout=block):
                    record = await self._guard.call_async(
                        scripts.wait_register, keys=status_key, args=[1]
                    )
            return record

    # Logged as wait_for's own failures (a Redis or argument error), named after it.
    _wait.__qualname__ = "AsyncQueueManager.wait_for"
    _wait = try_catch(context=logged.wait_context, caller_errors=logged.CALLER_ERRORS)(_wait)

    async def aclose(self) -> None:
        """Close this manager's asyncio connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._scripts = None
