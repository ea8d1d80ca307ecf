"""Read plans: a Redis conversation written once, run by a sync or an asyncio shell.

A plan is a generator that yields a batch of :class:`Command` s, receives their replies (in
order) and finally returns its answer. It does no I/O itself, so ``QueueManager`` and
``AsyncQueueManager`` (and anything else) run the same plan with :func:`run_sync` or
:func:`run_async`; each batch is one pipelined round trip (not a transaction).

Example::

    def read_depth(key: str) -> Plan[int]:
        (length,) = yield [Command("llen", key)]
        return int(length)

    run_sync(client, scripts, read_depth("queue:normal:emails"))
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from queue_system.engine.scripts import Scripts

T = TypeVar("T")


@dataclass(frozen=True, init=False)
class Command:
    """One Redis command (``name`` is a client method) or, with ``script=True``, one of our
    Lua scripts called with ``keys`` and ``args``."""

    name: str
    args: tuple[Any, ...]
    keys: tuple[str, ...]
    script: bool

    def __init__(self, name: str, *args: Any, keys: Sequence[str] = (), script: bool = False):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "keys", tuple(keys))
        object.__setattr__(self, "script", script)


Plan = Generator[list[Command], list[Any], T]


def _queue(pipe: Any, scripts: Scripts[Any], command: Command) -> Any:
    """Add ``command`` to ``pipe``; returns what the client returns (awaited by run_async)."""
    if command.script:
        script = getattr(scripts, command.name)
        return script(keys=list(command.keys), args=list(command.args), client=pipe)
    return getattr(pipe, command.name)(*command.args)


def run_sync(client: redis.Redis, scripts: Scripts[Script], plan: Plan[T]) -> T:
    """Run ``plan`` on a sync client: one pipelined round trip per batch it yields."""
    try:
        batch = next(plan)
        while True:
            pipe = client.pipeline(transaction=False)
            for command in batch:
                _queue(pipe, scripts, command)
            batch = plan.send(pipe.execute() if batch else [])
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(client: redis.asyncio.Redis, scripts: Scripts[AsyncScript], plan: Plan[T]) -> T:
    """Run ``plan`` on an asyncio client: one pipelined round trip per batch it yields."""
    try:
        batch = next(plan)
        while True:
            # ``async with``: a pipeline whose execute raised (a lost reply) is reset, not left
            # for the garbage collector to warn about.
            async with client.pipeline(transaction=False) as pipe:
                for command in batch:
                    queued = _queue(pipe, scripts, command)
                    if command.script:  # an asyncio Script call on a pipeline is a coroutine
                        await queued
                replies = await pipe.execute() if batch else []
            batch = plan.send(replies)
    except StopIteration as done:
        result: T = done.value
        return result
