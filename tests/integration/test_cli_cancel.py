"""``queue-system cancel ID...``: one line per id, exit 1 when an id is unknown."""

from __future__ import annotations

import json

import redis
from click.testing import Result

from queue_system import QueueConfig, QueueManager
from queue_system.cli.main import cli
from tests.support.burst import run_burst
from tests.support.cli import cli_runner


def record(data: dict) -> None:
    return None


def _run(config: QueueConfig, *args: str) -> Result:
    return cli_runner().invoke(
        cli, ["--url", config.redis_url, "--prefix", config.keys.prefix, *args]
    )


def test_cli_cancel_answers_per_id(config: QueueConfig, raw_redis: redis.Redis) -> None:
    manager = QueueManager(config)
    done = manager.enqueue({"n": 0}, record)["operation_id"]
    run_burst(config)
    waiting = manager.enqueue({"n": 1}, record)["operation_id"]

    result = _run(config, "cancel", waiting, done)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{waiting} cancelled", f"{done} already_finished"]
    assert raw_redis.llen(config.keys.queue("record")) == 0


def test_cli_cancel_exits_1_for_an_unknown_id(config: QueueConfig) -> None:
    waiting = QueueManager(config).enqueue({"n": 1}, record)["operation_id"]

    result = _run(config, "cancel", "--json", "nope", waiting)

    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"nope": "not_found", waiting: "cancelled"}
