"""Loads the Lua scripts in ``lua/`` once and registers them on a sync or asyncio client.

redis-py's ``Script`` objects already run ``EVALSHA`` and reload on ``NOSCRIPT``; this module
adds no cache of its own. Each ``.lua`` file documents its KEYS, ARGV and return values.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

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
    "forget_queue",
    "retire_idle_queues",
)

TOO_MANY_QUEUES = "QS_TOO_MANY_QUEUES"


def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` shipped with the package."""
    lua_dir = resources.files("queue_system.engine").joinpath("lua")
    return lua_dir.joinpath(f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Scripts:
    """One registered script object per atomic operation (sync ``Script`` or ``AsyncScript``)."""

    enqueue: Any
    claim: Any
    ack: Any
    schedule_retry: Any
    defer: Any
    dead_letter: Any
    promote_due: Any
    recover: Any
    release: Any
    renew: Any
    start: Any
    purge: Any
    position: Any
    forget_queue: Any
    retire_idle_queues: Any

    @classmethod
    def register(cls, client: Any) -> Scripts:
        """Register every script on ``client`` (a ``redis.Redis`` or ``redis.asyncio.Redis``)."""
        return cls(**{name: client.register_script(script_source(name)) for name in SCRIPT_NAMES})
