"""The CLI's view of scheduling: `scheduled`, scheduled counts in status/health, `job` fields."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result

from queue_system import QueueConfig, QueueManager
from queue_system.cli.main import cli
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.clock import FakeClock

LATER = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
LATE = dt.datetime(2031, 5, 6, 8, 0, 0, tzinfo=dt.timezone.utc)


def job(entity: dict[str, Any]) -> None:
    return None


@pytest.fixture
def run(redis_url: str, key_prefix: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return cli_runner().invoke(cli, ["--url", redis_url, "--prefix", key_prefix, *args])

    return invoke


def test_scheduled_lists_upcoming_items_soonest_first_with_filters(
    run: Callable[..., Result], manager: QueueManager
) -> None:
    late = manager.enqueue({"n": 1}, job, queue_name="emails", run_at=LATE)
    soon = manager.enqueue({"n": 2}, job, queue_name="emails", run_at=LATER, priority="high")
    other = manager.enqueue({"n": 3}, job, queue_name="sms", run_at=LATER, expires=LATE)

    listed = run("scheduled", "--json")
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.stdout)
    assert [i["operation_id"] for i in items] == [
        soon["operation_id"],
        other["operation_id"],
        late["operation_id"],
    ]
    assert items[0]["queue_name"] == "emails" and items[0]["priority"] == "high"
    assert items[0]["next_run_at"] == "2031-05-06T07:08:09.000+00:00"
    assert items[1]["expires_at"] == "2031-05-06T08:00:00.000+00:00"

    only_sms = json.loads(run("scheduled", "--queue", "sms", "--json").stdout)
    assert [i["operation_id"] for i in only_sms] == [other["operation_id"]]
    first = json.loads(run("scheduled", "--limit", "1", "--json").stdout)
    assert [i["operation_id"] for i in first] == [soon["operation_id"]]

    table = run("scheduled", "--wide")
    assert table.exit_code == 0
    assert "2031-05-06 07:08:09" in table.stdout and late["operation_id"] in table.stdout


def test_scheduled_says_when_nothing_is(run: Callable[..., Result]) -> None:
    result = run("scheduled")
    assert result.exit_code == 0 and "nothing scheduled" in result.stderr


def test_status_and_health_count_scheduled_items_per_queue(
    run: Callable[..., Result], manager: QueueManager
) -> None:
    manager.enqueue_batch([{"n": i} for i in range(3)], job, queue_name="emails", delay=600)
    manager.enqueue({"n": 9}, job, queue_name="emails")
    status = json.loads(run("status", "--json").stdout)
    assert status["queue_stats"]["emails"]["scheduled_jobs"] == 3
    assert status["queue_stats"]["emails"]["queue_size"] == 1
    health = run("health")
    assert health.exit_code == 0 and "3 scheduled" in health.stdout
    table = run("status", "--wide")
    assert "scheduled" in table.stdout
    monitor = run("monitor", "--snapshot", "--wide")
    assert monitor.exit_code == 0 and "scheduled" in monitor.stdout


def test_job_shows_scheduled_next_run_at_and_expired(
    run: Callable[..., Result], make_config: Callable[..., QueueConfig]
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock)
    manager = QueueManager(config)
    waiting = manager.enqueue({"n": 1}, job, run_at=LATER)["operation_id"]
    record = json.loads(run("job", waiting, "--json").stdout)
    assert record["status"] == "scheduled"
    assert record["next_run_at"] == "2031-05-06T07:08:09.000+00:00"
    shown = run("job", waiting)
    assert "scheduled" in shown.stdout and "next_run_at" in shown.stdout

    gone = manager.enqueue({"n": 2}, job, expires=5)["operation_id"]
    clock.advance(5)
    run_burst(config, wait_scheduled=False)
    record = json.loads(run("job", gone, "--json").stdout)
    assert record["status"] == "expired" and record["expired_at"] is not None
    assert "expired" in run("job", gone).stdout


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_scheduled_limit_below_one_is_a_usage_error(
    run: Callable[..., Result], manager: QueueManager, limit: str
) -> None:
    # Not an empty table saying "nothing scheduled" while items are
    manager.enqueue({"n": 1}, job, queue_name="emails", run_at=LATER)
    result = run("scheduled", "--limit", limit)
    assert result.exit_code == 2, result.output
    assert "--limit" in result.stderr and "nothing scheduled" not in result.stderr
