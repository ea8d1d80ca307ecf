"""Periodic jobs as the workers run them: what ``queue-system cron`` lists.

Workers publish the schedules of their config (``QueueConfig.cron``) at start and every
``PUBLISH_INTERVAL_S``; this reads them with each one's last tick and computes its next one.
"""

from __future__ import annotations

import json
from typing import Any

from queue_system.config import QueueConfig
from queue_system.core.clock import iso_utc, to_ms
from queue_system.core.envelope import as_text
from queue_system.core.schedule import STALE_AFTER_S, CronSpec
from queue_system.core.types import ScheduleInfo
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import Command, Plan, run_sync
from queue_system.engine.scripts import Scripts


def read_schedules(keys: KeySpace, now_s: float) -> Plan[list[ScheduleInfo]]:
    """Plan: every published schedule, sorted by name."""
    published, last_ticks, claims = yield [
        Command("hgetall", keys.cron_schedules),
        Command("hgetall", keys.cron_last),
        Command("hgetall", keys.cron_claims),
    ]
    entries = []
    for name, raw in published.items():
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = {}
        entries.append((as_text(name), entry if isinstance(entry, dict) else {}))
    workers = [str(entry.get("worker", "")) for _, entry in entries]
    alive = yield [Command("exists", keys.worker(worker)) for worker in workers]
    last_by_name = {as_text(k): int(v) for k, v in last_ticks.items()}
    claimed = {as_text(k) for k in claims}
    found = []
    for (name, entry), live in zip(entries, alive, strict=True):
        last = last_by_name.get(name)
        published_at = entry.get("published_at")
        fresh = isinstance(published_at, int) and now_s - published_at / 1000 <= STALE_AFTER_S
        spec = _spec(name, entry)
        next_ms = spec.next_tick(max(last or 0, to_ms(now_s))) if spec is not None else None
        found.append(
            ScheduleInfo(
                name=name,
                when=spec.when if spec is not None else "?",
                timezone=str(entry.get("timezone", "")),
                queue_name=str(entry.get("queue_name", "")),
                priority=str(entry.get("priority", "")),
                processor=str(entry.get("processor", "")),
                catch_up=str(entry.get("catch_up", "")),
                next_run=_iso(next_ms),
                last_run=_iso(last),
                worker=str(entry.get("worker", "")),
                published_at=_iso(published_at if isinstance(published_at, int) else None),
                stale=not (fresh and bool(live)),
                claim_open=name in claimed,
            )
        )
    return sorted(found, key=lambda s: s["name"])


def list_schedules(config: QueueConfig) -> list[ScheduleInfo]:
    """Every schedule workers of this namespace published (see :class:`ScheduleInfo`)."""
    scripts = Scripts.register(config.redis_client)
    return config.guard.call(  # a retry starts a fresh plan
        lambda: run_sync(
            config.redis_client, scripts, read_schedules(config.keys, config.clock.time())
        )
    )


def _spec(name: str, entry: dict[str, Any]) -> CronSpec | None:
    """The published spec (None if it does not parse: a newer or older release wrote it)."""
    try:
        return CronSpec(
            name=name,
            processor=str(entry["processor"]),
            expression=entry.get("expression"),
            every_ms=entry.get("every_ms"),
            timezone=str(entry.get("timezone", "UTC")),
            queue_name=str(entry["queue_name"]),
            priority=str(entry.get("priority", "normal")),
            catch_up=entry.get("catch_up", "none"),
        )
    except (KeyError, ValueError, TypeError):
        return None


def _iso(ms: int | None) -> str | None:
    return iso_utc(ms / 1000) if ms is not None else None
