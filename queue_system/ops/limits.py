"""Pause/resume and queue limits: the operator's reads and writes (used through QueueAdmin).

All state is in Redis and enforced by ``claim.lua`` on every worker at once:

- ``KeySpace.paused``: the waiting lists (one per queue and tier) that no claim takes from.
  Producers keep enqueueing; items wait in order until :func:`resume`.
- ``KeySpace.limits``: each limited queue's live limits (``core.limits.encode_limits``), with
  their source: ``config`` (written by workers from ``QueueConfig(limits=...)`` at start) or
  ``runtime`` (written by :func:`set_limits`). A runtime value wins over code until
  :func:`clear_limits`; then the next worker start writes the config's value again.
"""

from __future__ import annotations

from redis import Redis

from queue_system.config import NOTIFY_CAP, QueueConfig
from queue_system.core.checks import validate_priority, validate_queue_name
from queue_system.core.envelope import as_text
from queue_system.core.limits import QueueLimits, Source, decode_limits, encode_limits
from queue_system.core.types import PRIORITIES, LimitInfo, Priority

WAKE_TOKENS = 8  # wake-up tokens a resume pushes, so idle workers claim at once


def _tiers(priority: str | None) -> tuple[Priority, ...]:
    return PRIORITIES if priority is None else (validate_priority(priority),)


def pause(config: QueueConfig, queue: str, priority: str | None = None) -> list[Priority]:
    """Stop every worker claiming ``queue`` (or one tier); returns the tiers paused."""
    tiers = _tiers(priority)
    config.redis_client.sadd(config.keys.paused, *(config.keys.queue(queue, p) for p in tiers))
    return list(tiers)


def resume(config: QueueConfig, queue: str, priority: str | None = None) -> list[Priority]:
    """Let workers claim ``queue`` (or one tier) again, and wake idle ones; returns the tiers
    resumed."""
    tiers = _tiers(priority)
    pipe = config.redis_client.pipeline(transaction=True)
    pipe.srem(config.keys.paused, *(config.keys.queue(queue, p) for p in tiers))
    pipe.lpush(config.keys.notify, *(["1"] * WAKE_TOKENS))
    pipe.ltrim(config.keys.notify, 0, NOTIFY_CAP - 1)
    pipe.execute()
    return list(tiers)


def paused(config: QueueConfig) -> dict[str, list[Priority]]:
    """Paused tiers per queue name (queues with none paused are left out)."""
    found: dict[str, list[Priority]] = {}
    for key in sorted(as_text(k) for k in config.redis_client.smembers(config.keys.paused)):
        parsed = config.keys.parse_queue(key)
        if parsed is not None:
            found.setdefault(parsed[0], []).append(parsed[1])
    return {name: sorted(found[name], key=PRIORITIES.index) for name in sorted(found)}


def get_limits(config: QueueConfig) -> dict[str, LimitInfo]:
    """Every queue with live limits, and a runtime "no limits" override (which keeps a
    config's limits from applying); a malformed value written by hand is left out."""
    client, keys = config.redis_client, config.keys
    found: dict[str, tuple[QueueLimits, Source]] = {}
    for name, raw in client.hgetall(keys.limits).items():
        decoded = decode_limits(as_text(raw))
        if decoded is not None and (decoded[1] == "runtime" or not decoded[0].empty):
            found[as_text(name)] = decoded
    names = sorted(found)
    seconds, micros = client.time()  # the clock the claim script uses
    now_ms = seconds * 1000 + micros // 1000
    pipe = client.pipeline(transaction=False)
    for name in names:
        rate = found[name][0].rate
        pipe.smembers(keys.limit_running(name))
        pipe.zcount(keys.limit_starts(name), f"({now_ms - (rate.window_ms if rate else 0)}", "+inf")
    replies = pipe.execute()
    return {
        name: {
            "queue": name,
            "max_concurrency": found[name][0].max_concurrency,
            "rate_limit": found[name][0].rate_limit,
            "source": found[name][1],
            "slots": _live_slots(client, config, replies[2 * i], now_ms),
            "recent_claims": int(replies[2 * i + 1]),
        }
        for i, name in enumerate(names)
    }


def _live_slots(client: Redis, config: QueueConfig, tokens: set[bytes], now_ms: int) -> int:
    """How many of a capped queue's tokens hold a slot: their lease stands (as claim.lua
    counts them; it prunes the others lazily)."""
    if not tokens:
        return 0
    pipe = client.pipeline(transaction=False)
    for token in tokens:
        pipe.zscore(config.keys.leases, token)
    return sum(1 for deadline in pipe.execute() if deadline is not None and deadline >= now_ms)


def set_limits(config: QueueConfig, queue: str, limits: QueueLimits) -> None:
    """Set ``queue``'s live limits at runtime: they win over ``QueueConfig(limits=...)`` until
    :func:`clear_limits`. Empty limits are stored too (no limit, whatever the code says)."""
    validate_queue_name(queue)
    config.redis_client.hset(config.keys.limits, queue, encode_limits(limits, "runtime"))


def clear_limits(config: QueueConfig, queue: str) -> bool:
    """Remove ``queue``'s live limits (runtime or config); True if there were any. A worker
    whose config declares limits for ``queue`` writes them again when it starts."""
    validate_queue_name(queue)
    return bool(config.redis_client.hdel(config.keys.limits, queue))
