"""Queue names retire: forget an empty queue; idle names leave the registry by themselves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import redis
from click.testing import Result

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.cli.main import cli
from queue_system.ops.admin import QueueAdmin
from queue_system.worker.loops import QueueWorker
from queue_system.worker.store import WorkerBroker
from tests.integration import cli_app
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.clock import FakeClock
from tests.support.waiting import async_wait_until


@pytest.fixture
def run(redis_url: str, key_prefix: str) -> Callable[..., Result]:
    def invoke(*args: str, input: str | None = None) -> Result:
        argv = ["--url", redis_url, "--prefix", key_prefix, *args]
        return cli_runner().invoke(cli, argv, input=input)

    return invoke


def registered(config: QueueConfig) -> set[str]:
    return {n.decode() for n in config.redis_client.smembers(config.keys.registry)}


def claim_one(config: QueueConfig, queue: str) -> None:
    """Lease one item of ``queue`` and leave it in flight (a worker that died with it)."""

    async def main() -> None:
        client = config.make_async_client()
        try:
            [item] = await WorkerBroker(config, client, "w").claim([config.keys.queue(queue)], 1)
            assert item.token
        finally:
            await client.aclose()

    asyncio.run(main())


def test_forget_removes_an_empty_queue_from_the_registry(
    config: QueueConfig, manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="done_with")
    manager.purge_queue("done_with")
    QueueAdmin(config).forget_queue("done_with")
    assert "done_with" not in registered(config)
    # The name is free again: enqueueing to it registers it anew
    manager.enqueue({"n": 2}, cli_app.slow, queue_name="done_with")
    assert "done_with" in registered(config)


def test_forget_refuses_a_queue_with_waiting_items(
    config: QueueConfig, manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="busy", priority="low")
    with pytest.raises(ValueError, match="'busy' is not empty: 1 waiting"):
        QueueAdmin(config).forget_queue("busy")
    assert "busy" in registered(config)


def test_forget_refuses_a_queue_with_an_item_in_flight(
    config: QueueConfig, manager: QueueManager
) -> None:
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="running")
    claim_one(config, "running")
    with pytest.raises(ValueError, match="1 in flight"):
        QueueAdmin(config).forget_queue("running")
    assert "running" in registered(config)


def test_forget_refuses_a_queue_with_a_scheduled_retry(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config()
    QueueManager(config).enqueue(
        {"n": 1},
        cli_app.always_fail,
        queue_name="retrying",
        retry_config=QueueRetryConfig.fixed(delay=3600, max_attempts=3),
    )
    run_burst(config, queues=["retrying"], wait_scheduled=False)
    with pytest.raises(ValueError, match="1 scheduled"):
        QueueAdmin(config).forget_queue("retrying")
    assert "retrying" in registered(config)


def test_forget_of_an_unknown_queue_says_so(config: QueueConfig) -> None:
    with pytest.raises(ValueError, match="unknown queue 'ghost'"):
        QueueAdmin(config).forget_queue("ghost")


def test_idle_empty_queues_leave_the_registry_after_backup_ttl(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock, backup_ttl=3600)
    manager, admin = QueueManager(config), QueueAdmin(config)
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="idle")
    manager.purge_queue("idle")
    manager.enqueue({"n": 2}, cli_app.slow, queue_name="still_waiting")
    # Seen by a first pass, then idle for less than backup_ttl: kept
    assert admin.retire_idle_queues() == []
    clock.advance(3000)
    assert admin.retire_idle_queues() == []
    # Idle longer than backup_ttl: the empty one goes, the one with an item never does
    clock.advance(700)
    assert admin.retire_idle_queues() == ["idle"]
    assert registered(config) == {"still_waiting"}
    clock.advance(10 * 3600)
    assert admin.retire_idle_queues() == []
    assert registered(config) == {"still_waiting"}


def test_a_queue_used_between_passes_is_not_idle(
    make_config: Callable[..., QueueConfig],
) -> None:
    clock = FakeClock()
    config = make_config(clock=clock, backup_ttl=3600)
    manager, admin = QueueManager(config), QueueAdmin(config)
    manager.enqueue({"n": 0}, cli_app.slow, queue_name="q")
    manager.purge_queue("q")
    assert admin.retire_idle_queues() == []
    clock.advance(3000)
    # An item enqueued and processed between two passes (the queue is empty at each)
    manager.enqueue(
        {"n": 1}, cli_app.always_fail, queue_name="q", retry_config=QueueRetryConfig(max_attempts=0)
    )
    run_burst(config, queues=["q"])
    assert admin.retire_idle_queues() == []
    clock.advance(3000)
    assert admin.retire_idle_queues() == []  # 3000 s since it was last seen in use
    clock.advance(700)
    assert admin.retire_idle_queues() == ["q"]


def test_the_worker_retires_idle_queues(make_config: Callable[..., QueueConfig]) -> None:
    clock = FakeClock()
    config = make_config(clock=clock, backup_ttl=60)
    manager = QueueManager(config)
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="old")
    manager.purge_queue("old")
    QueueAdmin(config).retire_idle_queues()  # first seen now
    clock.advance(120)
    run_burst(config)
    assert registered(config) == set()


def test_cli_queues_lists_and_forgets(
    run: Callable[..., Result], config: QueueConfig, manager: QueueManager
) -> None:
    manager.enqueue_batch([{"n": n} for n in range(3)], cli_app.slow, queue_name="emails")
    manager.enqueue({"n": 1}, cli_app.slow, queue_name="old_reports")
    manager.purge_queue("old_reports")
    listed = run("queues", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert (rows["emails"]["waiting"], rows["old_reports"]["waiting"]) == (3, 0)
    table = run("queues")
    assert "emails" in table.stdout and "old_reports" in table.stdout
    refused = run("queues", "forget", "emails")
    assert refused.exit_code == 1 and "not empty: 3 waiting" in refused.stderr
    forgot = run("queues", "forget", "old_reports")
    assert forgot.exit_code == 0, forgot.output
    assert "forgot queue old_reports" in forgot.stdout
    assert registered(config) == {"emails"}
    unknown = run("queues", "forget", "old_reports")
    assert unknown.exit_code == 1 and "unknown queue" in unknown.stderr


def test_a_corrupt_queue_key_does_not_fail_maintenance(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config()
    retry = QueueRetryConfig.fixed(delay=0.2, max_attempts=2)
    QueueManager(config).enqueue(
        {"n": 1}, cli_app.always_fail, queue_name="retrying", retry_config=retry
    )
    # A waiting list of a registered name that is not a list: the retirement pass fails on it
    raw_redis.sadd(config.keys.registry, "corrupt")
    raw_redis.set(config.keys.queue("corrupt", "low"), "not a list")

    async def main() -> None:
        worker = QueueWorker(config, queues=["retrying"])
        await worker.start()
        try:
            # The maintenance still promotes the due retry, which then fails for good
            await async_wait_until(lambda: raw_redis.llen(config.keys.failures) == 1, timeout=5)
        finally:
            await worker.stop()

    asyncio.run(main())
    # Only the retirement pass is skipped (a warning), not the maintenance (no error backoff)
    assert not [r for r in caplog.records if "(maintain) failed" in r.getMessage()]
    assert any("could not retire idle queues" in r.getMessage() for r in caplog.records)
