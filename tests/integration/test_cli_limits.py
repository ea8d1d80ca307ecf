"""``queue-system pause|resume`` and ``queue-system limits`` (list, set, clear)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result

from queue_system import QueueAdmin, QueueConfig, QueueManager
from queue_system.cli.main import cli
from tests.support.cli import cli_runner


def job(data: dict) -> None:
    pass


@pytest.fixture
def run(redis_url: str, key_prefix: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return cli_runner().invoke(cli, ["--url", redis_url, "--prefix", key_prefix, *args])

    return invoke


def test_pause_and_resume_a_queue_or_one_tier(
    run: Callable[..., Result], config: QueueConfig
) -> None:
    QueueManager(config).enqueue({}, job, queue_name="sms")
    result = run("pause", "sms")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "paused sms (high, normal, low)"
    assert QueueAdmin(config).paused() == {"sms": ["high", "normal", "low"]}

    status = run("status", "--wide")
    assert "sms (paused)" in status.stdout
    health = run("health")
    assert "paused: sms" in health.stdout
    queues = json.loads(run("queues", "--json").stdout)
    assert queues[0]["paused"] == ["high", "normal", "low"]

    assert run("resume", "sms", "--priority", "high").stdout.strip() == "resumed sms (high)"
    assert "sms (paused: normal, low)" in run("status", "--wide").stdout
    assert run("resume", "sms").exit_code == 0
    assert QueueAdmin(config).paused() == {}
    assert run("pause", "sms", "--priority", "urgent").exit_code == 2


def test_limits_set_list_and_clear(run: Callable[..., Result], config: QueueConfig) -> None:
    empty = run("limits")
    assert empty.exit_code == 0 and "no queue has limits" in empty.stderr

    result = run("limits", "set", "sms", "--max-concurrency", "3")
    assert result.exit_code == 0, result.output
    assert "max concurrency 3, rate none" in result.stdout
    # An option not given keeps its value
    run("limits", "set", "sms", "--rate", "10/s")
    found = QueueAdmin(config).get_limits()["sms"]
    assert (found["max_concurrency"], found["rate_limit"], found["source"]) == (
        3,
        "10/s",
        "runtime",
    )

    QueueAdmin(config).pause("mail")
    listing = run("limits", "--wide")
    assert listing.exit_code == 0
    rows = {line.split()[1]: line for line in listing.stdout.splitlines() if "│" in line}
    assert "3" in rows["sms"] and "10/s" in rows["sms"] and "runtime" in rows["sms"]
    assert "high, normal, low" in rows["mail"]
    as_json = json.loads(run("limits", "--json").stdout)
    assert as_json["paused"] == {"mail": ["high", "normal", "low"]}
    assert as_json["limits"]["sms"]["rate_limit"] == "10/s"

    run("limits", "set", "sms", "--max-concurrency", "0", "--rate", "none")
    found = QueueAdmin(config).get_limits()["sms"]
    assert (found["max_concurrency"], found["rate_limit"]) == (None, None)

    assert run("limits", "clear", "sms").stdout.strip() == "cleared the limits of sms"
    assert run("limits", "clear", "sms").stdout.strip() == "sms had no limits"
    assert "sms" not in QueueAdmin(config).get_limits()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("limits", "set", "sms"), "give --max-concurrency and/or --rate"),
        (("limits", "set", "sms", "--rate", "fast"), "rate limit 'fast' is invalid"),
        (("limits", "set", "sms", "--max-concurrency", "-1"), "-1"),
    ],
)
def test_limits_set_rejects_bad_input(
    run: Callable[..., Result], args: tuple[str, ...], message: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "args",
    [("pause", "emials"), ("resume", "emials"), ("limits", "set", "emials", "--rate", "5/s")],
)
def test_a_queue_name_nothing_was_enqueued_to_is_named_as_such(
    run: Callable[..., Result], config: QueueConfig, args: tuple[str, ...]
) -> None:
    # A typo must not look like success; pausing ahead of a queue's first enqueue still works
    QueueManager(config).enqueue({}, job, queue_name="emails")
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "no queue 'emials' is registered yet (known: emails)" in result.stderr
    assert "emails" in result.stdout or "emials" in result.stdout
    assert "is registered" not in run(*args[:1], "emails", *args[2:]).stderr
