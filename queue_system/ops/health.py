"""System health: one snapshot of Redis, every queue and the live workers, in bounded time.

The snapshot is read on a dedicated client (timeouts of ``connection_timeout``, no retries) in
a helper thread that the caller waits for at most ``connection_timeout + HEALTH_MARGIN_S``: a
server that is down or frozen (SIGSTOP) gives ``redis_connected: false`` in bounded time and
never an exception. The reads are pipelined but not atomic; counts are a moment's view.

Cost: a few pipelined round trips plus one pass over the in-flight hash, the delayed set and
both dead-letter lists (read in chunks of ``SCAN_CHUNK``), so O(queues + in flight + delayed +
dead letters). Waiting items are only counted (LLEN), never read, except the head of each list.
Items scheduled with ``delay=``/``run_at=`` are counted from the ``scheduled_counts`` HASH
(one field per waiting list), never by reading the scheduled set.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

import redis

from queue_system.config import QueueConfig
from queue_system.core.clock import iso_utc
from queue_system.core.envelope import as_text
from queue_system.core.types import PRIORITIES, HealthSnapshot, QueueStats, Topology

HEALTH_MARGIN_S = 0.9  # the answer comes within connection_timeout + this
WORKER_FRESH_S = 30.0  # a worker whose last heartbeat is older is not counted
SCAN_CHUNK = 1000  # members read per round trip when counting delayed items and dead letters
# The queue of a dead-letter record, read without parsing the whole record: a key can only be
# followed by an unescaped quote outside JSON strings, and every "queue" in a record (top level
# or in its envelope) names the same queue.
_RECORD_QUEUE = re.compile(rb'"queue":\s*"([A-Za-z0-9][A-Za-z0-9_.\-]{0,127})"')


def health_client(config: QueueConfig) -> redis.Redis:
    """A new client for ``config``'s server that waits at most ``connection_timeout`` per
    command and never retries (the engine's client reconnects, which would multiply waits).

    For a server the config cannot name (a ``redis_client`` with a custom pool) it is
    ``config.redis_client`` itself, never a client rebuilt from settings that may point
    elsewhere (closing it is harmless: a redis-py client reconnects on its next command)."""
    made = config.make_sync_client(
        max_connection_retries=0,
        socket_timeout=config.connection_timeout,
        socket_connect_timeout=config.connection_timeout,
    )
    return config.redis_client if made is None else made


def system_health(config: QueueConfig) -> HealthSnapshot:
    """The health snapshot; see :meth:`queue_system.ops.admin.QueueAdmin.get_system_health`."""
    deadline_s = config.connection_timeout + HEALTH_MARGIN_S
    box: dict[str, Any] = {}
    done = threading.Event()

    def collect() -> None:
        client = health_client(config)
        try:
            box["result"] = _snapshot(client, config, box)
        except redis.RedisError as exc:
            box["redis_error"] = exc
        except Exception as exc:  # a bug, not an outage: re-raised in the caller
            box["bug"] = exc
        finally:
            if client is not config.redis_client:
                client.close()
            done.set()

    # A daemon thread: if the server froze, it ends on its own socket timeout after we return.
    threading.Thread(target=collect, name="queue-system-health", daemon=True).start()
    if not done.wait(deadline_s):
        return unavailable(
            config, f"no complete answer within {deadline_s:.1f}s", connected=bool(box.get("ping"))
        )
    if "bug" in box:
        raise box["bug"]
    if isinstance(box.get("redis_error"), redis.TimeoutError):
        return unavailable(config, f"no answer within {config.connection_timeout}s (frozen?)")
    if "redis_error" in box:
        return unavailable(config, f"{type(box['redis_error']).__name__}: {box['redis_error']}")
    result: HealthSnapshot = box["result"]
    return result


def unavailable(config: QueueConfig, error: str, *, connected: bool = False) -> HealthSnapshot:
    """The snapshot when Redis did not answer (every figure unknown: None)."""
    return {
        "redis_connected": connected,
        "checked_at": iso_utc(config.clock.time()),
        "error": error,
        "latency_ms": None,
        "redis_version": None,
        "server": None,
        "used_memory_bytes": None,
        "queue_stats": {},
        "totals": None,
        "workers": None,
        "topology": _topology(config, None, None),
    }


def _topology(
    config: QueueConfig, client: redis.Redis | None, replication: dict[str, Any] | None
) -> Topology:
    """The configured deployment, plus what the server that answered says about itself."""
    configured = config.topology()
    master: str | None = None
    if configured["mode"] == "sentinel" and client is not None:
        address = getattr(client.connection_pool, "master_address", None)
        master = f"{address[0]}:{address[1]}" if address else None
    elif config.target is not None and configured["mode"] == "standalone":
        master = config.target.label.rpartition("/")[0]
    return {
        "mode": configured["mode"],
        "service_name": configured["service_name"],
        "sentinels": configured["sentinels"],
        "role": _text(replication.get("role")) if replication else None,
        "master": master,
        "connected_replicas": int(replication.get("connected_slaves", 0)) if replication else None,
    }


def _snapshot(client: redis.Redis, config: QueueConfig, box: dict[str, Any]) -> HealthSnapshot:
    keys, clock = config.keys, config.clock
    started = clock.monotonic()
    client.ping()
    box["ping"] = True
    latency_ms = (clock.monotonic() - started) * 1000
    now = clock.time()
    pipe = client.pipeline(transaction=False)
    pipe.info("server")
    pipe.info("memory")
    pipe.info("replication")
    pipe.smembers(keys.registry)
    pipe.llen(keys.failures)
    pipe.llen(keys.system_errors)
    pipe.hvals(keys.inflight)
    pipe.zcard(keys.delayed)
    pipe.zrangebyscore(keys.workers, int((now - WORKER_FRESH_S) * 1000), "+inf")
    pipe.hgetall(keys.scheduled_counts)
    pipe.zcard(keys.scheduled)
    pipe.hgetall(keys.metrics)
    (
        server,
        memory,
        replication,
        registered,
        n_failed,
        n_errors,
        inflight,
        n_delayed,
        worker_ids,
        scheduled_counts,
        n_scheduled,
        metrics,
    ) = pipe.execute()
    in_flight = _count_by_queue(config, (v.partition(b"\n")[0] for v in inflight))
    scheduled = _count_by_queue(config, _delayed_list_keys(client, config, int(n_delayed)))
    scheduled.update(_scheduled_by_queue(config, scheduled_counts))
    failed = _dead_letter_counts(client, config, "failed", int(n_failed), metrics)
    errors = _dead_letter_counts(client, config, "system_errors", int(n_errors), metrics)
    names = sorted(
        {as_text(n) for n in registered}
        | set(in_flight)
        | set(scheduled)
        | set(failed)
        | set(errors)
    )
    pipe = client.pipeline(transaction=False)
    for name in names:
        for priority in PRIORITIES:
            pipe.llen(keys.queue(name, priority))
            pipe.lindex(keys.queue(name, priority), -1)
    for worker_id in worker_ids:
        pipe.hget(keys.worker(as_text(worker_id)), "running")
    replies = pipe.execute()
    stats: dict[str, QueueStats] = {}
    for i, name in enumerate(names):
        tiers = replies[i * 2 * len(PRIORITIES) : (i + 1) * 2 * len(PRIORITIES)]
        depths: dict[str, int] = {p: int(tiers[2 * j]) for j, p in enumerate(PRIORITIES)}
        by_tier = {p: _age(now, _enqueued_at(tiers[2 * j + 1])) for j, p in enumerate(PRIORITIES)}
        ages = [age for age in by_tier.values() if age is not None]
        stats[name] = {
            "high": depths["high"],
            "normal": depths["normal"],
            "low": depths["low"],
            "queue_size": sum(depths.values()),
            "in_flight": in_flight[name],
            "scheduled_jobs": scheduled[name],
            "failed_jobs": failed[name],
            "system_errors": errors[name],
            "oldest_age_s": max(ages) if ages else None,
            "oldest_age_by_priority": by_tier,
            "paused": [],
        }
    running = replies[len(names) * 2 * len(PRIORITIES) :]
    paused = {as_text(key) for key in client.smembers(keys.paused)}
    for name, row in stats.items():
        row["paused"] = [p for p in PRIORITIES if keys.queue(name, p) in paused]
    return {
        "redis_connected": True,
        "checked_at": iso_utc(now),
        "error": None,
        "latency_ms": round(latency_ms, 3),
        "redis_version": _text(server.get("redis_version")),
        "server": _server_name(server),
        "used_memory_bytes": int(memory.get("used_memory", 0)),
        "queue_stats": stats,
        "totals": {
            "queue_size": sum(s["queue_size"] for s in stats.values()),
            "in_flight": len(inflight),
            "scheduled_jobs": int(n_delayed) + int(n_scheduled),
            "failed_jobs": int(n_failed),
            "system_errors": int(n_errors),
        },
        "workers": {
            "count": len(worker_ids),
            "active": sum(1 for r in running if r is not None and _int(r) > 0),
        },
        "topology": _topology(config, client, replication),
    }


def _count_by_queue(config: QueueConfig, list_keys: Iterable[bytes]) -> Counter[str]:
    """How many of ``list_keys`` (waiting-list key names) belong to each queue."""
    counts: Counter[str] = Counter()
    for key in list_keys:
        parsed = config.keys.parse_queue(key.decode("utf-8", "replace"))
        if parsed is not None:
            counts[parsed[0]] += 1
    return counts


def _scheduled_by_queue(config: QueueConfig, counts: dict[bytes, bytes]) -> Counter[str]:
    """Per queue, its items in the scheduled set, from the counts HASH (list key -> count)
    that enqueue.lua and promote_due.lua keep: no scan of the set."""
    found: Counter[str] = Counter()
    for list_key, count in counts.items():
        parsed = config.keys.parse_queue(list_key.decode("utf-8", "replace"))
        if parsed is not None:
            found[parsed[0]] += max(0, int(count))
    return found


def _delayed_list_keys(client: redis.Redis, config: QueueConfig, total: int) -> list[bytes]:
    """The list key of every delayed member ("<list key>\\n<item>"), read in chunks."""
    found: list[bytes] = []
    for start in range(0, total, SCAN_CHUNK):
        members = cast(
            "list[bytes]", client.zrange(config.keys.delayed, start, start + SCAN_CHUNK - 1)
        )
        found.extend(m.partition(b"\n")[0] for m in members)
    return found


def _dead_letter_counts(
    client: redis.Redis,
    config: QueueConfig,
    kind: str,
    total: int,
    metrics: dict[bytes, bytes],
) -> Counter[str]:
    """Dead letters per queue in one list (``kind``: "failed" or "system_errors").

    The scripts that write or remove dead letters keep per-queue counts in the metrics HASH
    (``dead:<kind>:<queue>``), so this costs nothing per record. When the counts do not add
    up to the list's length (records from before the counts existed, the metrics reset, the
    list expired, a writer that does not count), the list is read once and the counts are
    rewritten from it.
    """
    prefix = f"dead:{kind}:".encode()
    counts: Counter[str] = Counter()
    for field, value in metrics.items():
        if field.startswith(prefix):
            counts[field[len(prefix) :].decode("utf-8", "replace")] = _int(value)
    if sum(counts.values()) != total or any(n < 0 for n in counts.values()):
        counts = _recount_dead_letters(client, config, kind, stale=set(counts))
    counts.pop("", None)  # records that name no queue
    return +counts


def _recount_dead_letters(
    client: redis.Redis, config: QueueConfig, kind: str, stale: set[str]
) -> Counter[str]:
    """Count one dead-letter list's records per queue by reading them, and store the counts
    unless a record was written or removed meanwhile (WATCH on the list)."""
    keys = config.keys
    list_key = keys.system_errors if kind == "system_errors" else keys.failures
    counts: Counter[str] = Counter()
    with client.pipeline() as pipe:
        try:
            pipe.watch(list_key)  # type: ignore[no-untyped-call]
            total = int(pipe.llen(list_key))
            for start in range(0, total, SCAN_CHUNK):
                records = cast("list[bytes]", pipe.lrange(list_key, start, start + SCAN_CHUNK - 1))
                for record in records:
                    match = _RECORD_QUEUE.search(record)
                    counts[match.group(1).decode() if match else ""] += 1
            pipe.multi()
            gone = [f"dead:{kind}:{queue}" for queue in stale - set(counts)]
            if gone:
                pipe.hdel(keys.metrics, *gone)
            if counts:
                pipe.hset(keys.metrics, mapping={f"dead:{kind}:{q}": n for q, n in counts.items()})
                pipe.expire(keys.metrics, config.backup_ttl)
            pipe.execute()
        except redis.WatchError:
            pass  # a dead letter was written meanwhile: the next read counts again
    return counts


def _age(now: float, enqueued_at: float | None) -> float | None:
    """Seconds since ``enqueued_at`` (ms precision, never negative: clocks of producers differ)."""
    return None if enqueued_at is None else round(max(0.0, now - enqueued_at), 3)


def _enqueued_at(raw: bytes | None) -> float | None:
    """The ``enqueued_at`` of a stored item: items are untrusted bytes, so anything but a
    finite number gives None (never an exception)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("enqueued_at")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        at = float(value)
    except (ValueError, AttributeError, OverflowError, RecursionError):
        return None
    return at if math.isfinite(at) else None


def _server_name(info: dict[str, Any]) -> str:
    """``"valkey 9.1.2"`` or ``"redis 7.2.4"``: what actually answers."""
    name = _text(info.get("server_name")) or "redis"
    version = _text(info.get(f"{name}_version")) or _text(info.get("redis_version"))
    return f"{name} {version}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: bytes | str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0
