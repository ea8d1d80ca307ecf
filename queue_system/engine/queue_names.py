"""The script calls that retire queue names (``lua/forget_queue.lua``,
``lua/retire_idle_queues.lua``), shared by QueueAdmin and the worker's maintenance. Pure.

A name stays in the registry while anything of its queue is waiting, in flight or scheduled;
an empty one can be forgotten at once, and one idle (no item waiting or finished) for longer
than ``backup_ttl`` leaves by itself. Enqueueing to a retired name registers it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from queue_system.core.types import PRIORITIES
from queue_system.engine.keys import KeySpace

RETIRE_INTERVAL_S = 60.0  # how often a worker looks for idle queue names


@dataclass(frozen=True, kw_only=True)
class ScriptCall:
    """The KEYS and ARGV of one script call."""

    keys: list[str]
    args: list[Any]


def _shared_keys(keys: KeySpace) -> list[str]:
    return [keys.registry, keys.queue_activity, keys.inflight, keys.delayed]


def forget_call(keys: KeySpace, name: str) -> ScriptCall:
    """``forget_queue.lua`` for ``name`` (validated: an invalid name raises ValueError)."""
    return ScriptCall(
        keys=[
            *_shared_keys(keys),
            *(keys.queue(name, p) for p in PRIORITIES),
            keys.scheduled_counts,
        ],
        args=[name],
    )


def retire_call(keys: KeySpace, names: list[str], *, now_s: float, idle_ttl_s: int) -> ScriptCall:
    """``retire_idle_queues.lua`` over ``names`` (the registry as read just before)."""
    valid = [name for name in names if _valid(keys, name)]
    lists = [keys.queue(name, p) for name in valid for p in PRIORITIES]
    return ScriptCall(
        keys=[*_shared_keys(keys), keys.metrics, *lists, keys.scheduled_counts],
        args=[now_s, idle_ttl_s, len(valid), *valid],
    )


def _valid(keys: KeySpace, name: str) -> bool:
    try:
        keys.queue(name)
    except ValueError:  # written by hand or another version: never ours to retire
        return False
    return True
