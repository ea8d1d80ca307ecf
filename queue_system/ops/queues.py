"""Queue names: list them with their depth and last activity, forget empty ones, retire idle
ones (see :mod:`queue_system.engine.queue_names`). Used through :class:`QueueAdmin`."""

from __future__ import annotations

from typing import Any

from queue_system.config import QueueConfig
from queue_system.core.clock import iso_utc
from queue_system.core.envelope import as_text
from queue_system.core.types import QueueInfo
from queue_system.engine.queue_names import ScriptCall, forget_call, retire_call
from queue_system.engine.scripts import script_source
from queue_system.errors import QueueUnavailableError
from queue_system.ops.health import system_health


def queue_names(config: QueueConfig) -> list[str]:
    """Every registered queue name, sorted."""
    return sorted(as_text(n) for n in config.redis_client.smembers(config.keys.registry))


def list_queues(config: QueueConfig) -> list[QueueInfo]:
    """Every registered queue with its depth per tier, in flight, scheduled, last activity."""
    health = system_health(config)
    if not health["redis_connected"]:
        raise QueueUnavailableError(f"Redis is not answering: {health['error']}")
    activity = {
        as_text(k): as_text(v).partition(" ")[0]
        for k, v in config.redis_client.hgetall(config.keys.queue_activity).items()
    }
    found: list[QueueInfo] = []
    for name in queue_names(config):
        stats = health["queue_stats"].get(name)
        seen = activity.get(name)
        found.append(
            {
                "name": name,
                "high": stats["high"] if stats else 0,
                "normal": stats["normal"] if stats else 0,
                "low": stats["low"] if stats else 0,
                "waiting": stats["queue_size"] if stats else 0,
                "in_flight": stats["in_flight"] if stats else 0,
                "scheduled": stats["scheduled_jobs"] if stats else 0,
                "last_activity": iso_utc(float(seen)) if seen else None,
                "paused": list(stats["paused"]) if stats else [],
            }
        )
    return found


def forget_queue(config: QueueConfig, name: str) -> None:
    """Remove the empty queue ``name`` from the registry, atomically with the check."""
    answer = _run(config, "forget_queue", forget_call(config.keys, name))
    known, waiting, in_flight, scheduled, _ = (int(n) for n in answer)
    if not known:
        raise ValueError(f"unknown queue {name!r}")
    if waiting or in_flight or scheduled:
        raise ValueError(
            f"queue {name!r} is not empty: {waiting} waiting, {in_flight} in flight, "
            f"{scheduled} scheduled (purge or let workers finish first)"
        )


def retire_idle_queues(config: QueueConfig) -> list[str]:
    """Note which queues are in use; remove names idle past ``backup_ttl`` and empty."""
    call = retire_call(
        config.keys,
        queue_names(config),
        now_s=config.clock.time(),
        idle_ttl_s=config.backup_ttl,
    )
    return sorted(as_text(n) for n in _run(config, "retire_idle_queues", call))


def _run(config: QueueConfig, script: str, call: ScriptCall) -> list[Any]:
    found: list[Any] = config.redis_client.register_script(script_source(script))(
        keys=call.keys, args=call.args
    )
    return found
