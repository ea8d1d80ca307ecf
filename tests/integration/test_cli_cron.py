"""``queue-system cron``: schedules as live workers publish them; the others are stale."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import redis

from queue_system import QueueConfig, QueueWorker
from queue_system.cli.main import cli
from queue_system.core.clock import iso_utc
from tests.support.cli import cli_runner
from tests.support.waiting import async_wait_until


def nightly(data: dict[str, Any]) -> None:
    """A periodic job (never runs in these tests)."""


def poll(data: dict[str, Any]) -> None:
    """Another one."""


def run_cli(redis_url: str, key_prefix: str, *args: str) -> Any:
    result = cli_runner().invoke(cli, ["--url", redis_url, "--prefix", key_prefix, "cron", *args])
    assert result.exit_code == 0, result.output + result.stderr
    return result


def test_cron_lists_live_and_stale_schedules(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    redis_url: str,
    key_prefix: str,
) -> None:
    # Given: a worker running two schedules, and one a former deploy published (removed since)
    config = make_config()
    config.cron("30 2 * * *", nightly, timezone="Europe/Berlin", queue_name="reports")
    config.cron(every=dt.timedelta(hours=1), processor=poll, name="poll", priority="high")
    old = {
        "name": "gone",
        "processor": "app:gone",
        "expression": "0 * * * *",
        "every_ms": None,
        "timezone": "UTC",
        "queue_name": "gone",
        "priority": "normal",
        "catch_up": "none",
        "worker": "old-worker",
        "published_at": 1_000_000_000_000,
    }
    raw_redis.hset(config.keys.cron_schedules, "gone", json.dumps(old))
    raw_redis.hset(config.keys.cron_last, "gone", 1_000_000_000_000)

    async def main() -> tuple[Any, Any, Any]:
        worker = QueueWorker(config, max_workers=1)
        await worker.start()
        try:
            await async_wait_until(
                lambda: raw_redis.hexists(config.keys.cron_schedules, "poll"), message="published"
            )
            listed = await asyncio.to_thread(run_cli, redis_url, key_prefix, "--json")
            table = await asyncio.to_thread(run_cli, redis_url, key_prefix, "--wide")
        finally:
            await worker.stop()
        after = await asyncio.to_thread(run_cli, redis_url, key_prefix, "--json")
        return listed, table, after

    listed, table, after = asyncio.run(main())

    # Then: the running ones are live with their next run; the removed one is stale
    found = {s["name"]: s for s in json.loads(listed.stdout)}
    assert sorted(found) == ["gone", "poll", f"{__name__}:nightly"]
    night = found[f"{__name__}:nightly"]
    assert night["when"] == "30 2 * * *"
    assert night["timezone"] == "Europe/Berlin"
    assert night["queue_name"] == "reports"
    assert night["stale"] is False
    assert night["last_run"] is None
    next_run = dt.datetime.fromisoformat(night["next_run"]).astimezone(
        dt.timezone(dt.timedelta(hours=1))
    )
    assert next_run.strftime("%M") == "30"
    assert found["poll"]["when"] == "every 3600s"
    assert found["poll"]["priority"] == "high"
    assert found["poll"]["next_run"].endswith(":00:00.000+00:00")
    assert found["gone"]["stale"] is True
    assert found["gone"]["last_run"] == iso_utc(1_000_000_000)
    assert "every 3600s" in table.stdout
    assert "stale" in table.stdout and "live" in table.stdout
    # And: once the worker has stopped, nothing is live
    assert all(s["stale"] for s in json.loads(after.stdout))


def test_cron_with_no_schedules_says_so(redis_url: str, key_prefix: str) -> None:
    result = run_cli(redis_url, key_prefix)
    assert "no schedules published" in result.stderr
