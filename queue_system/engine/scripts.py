"""Loads the Lua scripts in ``lua/`` once and registers them on a sync or asyncio client.

redis-py's ``Script`` objects already run ``EVALSHA`` and reload on ``NOSCRIPT``; this module
adds no cache of its own. Each ``.lua`` file documents its KEYS, ARGV and return values.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Generic, TypeVar, overload

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

SCRIPT_NAMES = (
    "enqueue",
    "claim",
    "ack",
    "schedule_retry",
    "defer",
    "dead_letter",
    "promote_due",
    "recover",
    "release",
    "renew",
    "start",
    "purge",
    "position",
    "requeue",
    "drop_dead_letter",
    "forget_queue",
    "retire_idle_queues",
    "expire",
    "seed_limits",
    "cron_claim",
    "cron_done",
    "cancel",
    "finish_cancelled",
    "wait_register",
    "progress",
    "enqueue_dependent",
    "resolve_dependents",
    "cancel_dependent",
)

TOO_MANY_QUEUES = "QS_TOO_MANY_QUEUES"
UNKNOWN_DEPENDENCY = "QS_UNKNOWN_DEPENDENCY"


INCLUDE = "--#include "


def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` shipped with the package, each ``--#include <lib>`` line
    replaced by ``lua/lib/<lib>.lua`` (local functions several scripts share)."""
    lua_dir = resources.files("queue_system.engine").joinpath("lua")
    lines = lua_dir.joinpath(f"{name}.lua").read_text("utf-8").splitlines(keepends=True)
    return "".join(
        lua_dir.joinpath("lib").joinpath(f"{line[len(INCLUDE) :].strip()}.lua").read_text("utf-8")
        if line.startswith(INCLUDE)
        else line
        for line in lines
    )


#: A registered script: ``Script`` on a sync client, ``AsyncScript`` (awaited) on an asyncio one.
S = TypeVar("S", Script, AsyncScript)


@dataclass(frozen=True, kw_only=True)
class Scripts(Generic[S]):
    """One registered script object per atomic operation, on one client."""

    enqueue: S
    claim: S
    ack: S
    schedule_retry: S
    defer: S
    dead_letter: S
    promote_due: S
    recover: S
    release: S
    renew: S
    start: S
    purge: S
    position: S
    requeue: S
    drop_dead_letter: S
    forget_queue: S
    retire_idle_queues: S
    expire: S
    seed_limits: S
    cron_claim: S
    cron_done: S
    cancel: S
    finish_cancelled: S
    wait_register: S
    progress: S
    enqueue_dependent: S
    resolve_dependents: S
    cancel_dependent: S

    @overload
    @classmethod
    def register(cls, client: redis.Redis) -> Scripts[Script]: ...

    @overload
    @classmethod
    def register(cls, client: redis.asyncio.Redis) -> Scripts[AsyncScript]: ...

    @classmethod
    def register(
        cls, client: redis.Redis | redis.asyncio.Redis
    ) -> Scripts[Script] | Scripts[AsyncScript]:
        """Register every script on ``client`` (a ``redis.Redis`` or ``redis.asyncio.Redis``)."""
        scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}
        return cls(**scripts)  # type: ignore[arg-type]
