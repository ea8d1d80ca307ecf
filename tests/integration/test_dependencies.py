"""Job dependencies (issue 13): ``enqueue(..., depends_on=[...])`` on a real server.

An item that depends on others waits in its status record (``waiting_for_dependencies``)
until they all complete; one that fails, errors, is cancelled or expires fails it with reason
``dependency_failed`` (and its own dependents in turn), unless ``on_dependency_failure="run"``.
Processors report to a Redis list named in their entity, so the order of runs is the order
the server saw them, whatever process ran them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from queue_system import (
    AsyncQueueManager,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    ReplicationTimeoutError,
)
from queue_system.cli.main import cli
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from queue_system.ops.admin import QueueAdmin
from queue_system.web import create_app
from queue_system.worker.store import ACKED, Completion, WorkerBroker
from tests.integration.test_dashboard import TOKEN, login
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.clock import FakeClock
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until
from tests.support.web import TestClient
from utils import breakers

ROOT = Path(__file__).resolve().parents[2]
NO_RETRY = QueueRetryConfig(max_attempts=0)
EVALSHA = b"EVALSHA"


def record(data: dict[str, Any]) -> str:
    """Append this item's name to the run log; fail when told to."""
    client = redis.Redis.from_url(data["url"])
    try:
        client.rpush(data["log"], data["name"])
    finally:
        client.close()
    if data.get("fail"):
        raise ValueError(f"{data['name']} fails")
    return str(data["name"])


def hang_forever(data: dict[str, Any]) -> None:
    """In the child worker: log the start, then never finish (it is SIGKILLed)."""
    client = redis.Redis.from_url(data["url"])
    client.rpush(data["log"], f"{data['name']}-started")
    client.close()
    import time

    time.sleep(3600)


FAILURE_CALLS: list[dict[str, Any]] = []


def note_failure(data: dict[str, Any]) -> None:
    FAILURE_CALLS.append(data)


class Jobs:
    """Enqueue helpers bound to one test's config and run log."""

    def __init__(self, config: QueueConfig, url: str, log: str) -> None:
        self.config = config
        self.manager = QueueManager(config)
        self.url = url
        self.log = log

    def add(self, name: str, processor: Callable[..., Any] = record, **options: Any) -> str:
        entity = {"url": self.url, "log": self.log, "name": name}
        if options.pop("fail", False):
            entity["fail"] = True
        options.setdefault("queue_name", "deps")
        options.setdefault("retry_config", NO_RETRY)
        expected = options.pop("expect", "queued")
        result = self.manager.enqueue(entity, processor, **options)
        assert result["status"] == expected
        return result["operation_id"]

    def status(self, op_id: str) -> str | None:
        info = self.manager.get_operation(op_id)
        return None if info is None else info["status"]

    def runs(self, raw_redis: redis.Redis) -> list[str]:
        return [entry.decode() for entry in raw_redis.lrange(self.log, 0, -1)]

    def failures(self, raw_redis: redis.Redis) -> dict[str, dict[str, Any]]:
        records = [json.loads(raw) for raw in raw_redis.lrange(self.config.keys.failures, 0, -1)]
        return {r["operation_id"]: r for r in records}


@pytest.fixture
def jobs(config: QueueConfig, redis_url: str, key_prefix: str) -> Jobs:
    config.register_callback(record)
    config.register_callback(note_failure)
    return Jobs(config, redis_url, f"{key_prefix}log")


def no_dependency_keys_left(raw_redis: redis.Redis, config: QueueConfig) -> bool:
    prefix = config.keys.prefix
    left = [
        *raw_redis.scan_iter(f"{prefix}dependents:*"),
        *raw_redis.scan_iter(f"{prefix}waits_on:*"),
    ]
    return not left and raw_redis.llen(config.keys.deps_outbox) == 0


# --- A, B -> C ---------------------------------------------------------------------------------


def test_c_runs_only_after_a_and_b_complete(jobs: Jobs, raw_redis: redis.Redis) -> None:
    # Given A and B at low priority and C, depending on both, at high priority: a single
    # worker would take C first if it were on its list.
    a = jobs.add("A", priority="low")
    b = jobs.add("B", priority="low")
    c = jobs.add("C", priority="high", depends_on=[a, b])
    assert jobs.status(c) == "waiting_for_dependencies"
    assert raw_redis.llen(jobs.config.keys.queue("deps", "high")) == 0

    run_burst(jobs.config, max_workers=1)

    assert jobs.runs(raw_redis) == ["A", "B", "C"]
    assert [jobs.status(op) for op in (a, b, c)] == ["completed"] * 3
    assert jobs.manager.wait_for(c, timeout=1) == "C"
    assert no_dependency_keys_left(raw_redis, jobs.config)


def test_c_waits_while_only_one_dependency_completed(jobs: Jobs, raw_redis: redis.Redis) -> None:
    a = jobs.add("A", queue_name="first")
    b = jobs.add("B", queue_name="second")
    c = jobs.add("C", depends_on=[a, b])

    run_burst(jobs.config, queues=["first", "deps"])

    assert jobs.runs(raw_redis) == ["A"]
    assert jobs.status(c) == "waiting_for_dependencies"
    assert raw_redis.smembers(jobs.config.keys.waits_on(c)) == {b.encode()}
    assert (jobs.manager.get_operation(c) or {})["depends_on"] == [a, b]
    assert (jobs.manager.get_operation(a) or {})["depends_on"] is None
    run_burst(jobs.config)
    assert jobs.runs(raw_redis) == ["A", "B", "C"]


WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from queue_system import QueueConfig, QueueWorker
    from tests.integration.test_dependencies import hang_forever, record
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2], lease_timeout=1.0)
    config.register_callback(record)
    config.register_callback(hang_forever)
    asyncio.run(QueueWorker(config, max_workers=1).run())
    """
)


@pytest.mark.slow
def test_sigkill_during_b_redelivers_b_and_runs_c_once_after_both(
    make_config: Callable[..., QueueConfig],
    redis_url: str,
    key_prefix: str,
    raw_redis: redis.Redis,
) -> None:
    config = make_config(lease_timeout=1.0)
    jobs = Jobs(config, redis_url, f"{key_prefix}log")
    a = jobs.add("A", priority="high")
    b = jobs.add("B", hang_forever)
    c = jobs.add("C", depends_on=[a, b])
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER_CHILD, redis_url, key_prefix],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_until(lambda: "B-started" in jobs.runs(raw_redis), timeout=20, message="B started")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert jobs.runs(raw_redis) == ["A", "B-started"]
    assert jobs.status(a) == "completed" and jobs.status(b) == "processing"
    assert jobs.status(c) == "waiting_for_dependencies"
    # Another worker, whose processor of that name finishes, recovers B (lease expiry).
    config.register_callback(record, name=f"{__name__}:hang_forever")
    config.register_callback(record)

    run_burst(config)

    assert jobs.runs(raw_redis) == ["A", "B-started", "B", "C"]
    assert [jobs.status(op) for op in (a, b, c)] == ["completed"] * 3
    assert no_dependency_keys_left(raw_redis, config)


# --- failures and their cascade ------------------------------------------------------------


def test_failed_dependency_fails_c_and_cascades_to_d(jobs: Jobs, raw_redis: redis.Redis) -> None:
    FAILURE_CALLS.clear()
    a = jobs.add("A", fail=True)
    c = jobs.add("C", depends_on=[a], on_failure=note_failure)
    d = jobs.add("D", depends_on=[c])

    run_burst(jobs.config)

    assert jobs.runs(raw_redis) == ["A"]
    assert [jobs.status(op) for op in (a, c, d)] == ["failed"] * 3
    failures = jobs.failures(raw_redis)
    assert failures[c]["reason"] == "dependency_failed"
    assert (failures[c]["dependency_id"], failures[c]["dependency_status"]) == (a, "failed")
    assert (failures[d]["dependency_id"], failures[d]["dependency_status"]) == (c, "failed")
    assert failures[c]["envelope"]["entity"]["name"] == "C"
    wait_until(lambda: len(FAILURE_CALLS) == 1, timeout=5, message="C's on_failure")
    assert FAILURE_CALLS[0]["operation_id"] == c
    assert FAILURE_CALLS[0]["reason"] == "dependency_failed"
    assert no_dependency_keys_left(raw_redis, jobs.config)


def test_run_anyway_runs_c_after_a_failed(jobs: Jobs, raw_redis: redis.Redis) -> None:
    a = jobs.add("A", fail=True)
    b = jobs.add("B")
    c = jobs.add("C", depends_on=[a, b], on_dependency_failure="run")

    run_burst(jobs.config, max_workers=1)

    assert jobs.runs(raw_redis) == ["A", "B", "C"]
    assert jobs.status(c) == "completed"


def test_requeued_dependency_failed_item_runs_without_its_dependencies(
    jobs: Jobs, raw_redis: redis.Redis
) -> None:
    a = jobs.add("A", fail=True)
    c = jobs.add("C", depends_on=[a])
    run_burst(jobs.config)
    assert jobs.status(c) == "failed"

    report = QueueAdmin(jobs.config).requeue(operation_ids=[c])
    run_burst(jobs.config)

    assert report["count"] == 1
    assert jobs.runs(raw_redis) == ["A", "C"]
    assert jobs.status(c) == "completed"


# --- at enqueue time -------------------------------------------------------------------------


def test_dependency_already_completed_queues_at_once(jobs: Jobs, raw_redis: redis.Redis) -> None:
    a = jobs.add("A")
    run_burst(jobs.config)

    c = jobs.add("C", depends_on=[a])

    assert jobs.status(c) == "pending"
    run_burst(jobs.config)
    assert jobs.runs(raw_redis) == ["A", "C"]


def test_dependency_already_failed_fails_at_once(jobs: Jobs, raw_redis: redis.Redis) -> None:
    a = jobs.add("A", fail=True)
    run_burst(jobs.config)

    c = jobs.add("C", depends_on=[a], expect="dependency_failed")

    assert jobs.status(c) == "failed"
    record_c = jobs.failures(raw_redis)[c]
    assert record_c["reason"] == "dependency_failed" and record_c["dependency_id"] == a
    assert QueueAdmin(jobs.config).get_dead_letter(c) is not None
    run_burst(jobs.config)
    assert jobs.runs(raw_redis) == ["A"]


def test_unknown_dependency_is_refused_and_nothing_stored(
    jobs: Jobs, raw_redis: redis.Redis
) -> None:
    with pytest.raises(ValueError, match="nope"):
        jobs.add("C", depends_on=["nope"], operation_id="c-1")
    assert jobs.status("c-1") is None
    assert not list(raw_redis.scan_iter(f"{jobs.config.keys.prefix}*dependents*"))


def test_bad_arguments_are_refused_before_any_write(jobs: Jobs) -> None:
    a = jobs.add("A")
    with pytest.raises(ValueError, match="itself"):
        jobs.add("C", depends_on=[a, "c-2"], operation_id="c-2")
    with pytest.raises(ValueError, match="on_dependency_failure"):
        jobs.add("C", depends_on=[a], on_dependency_failure="maybe")
    with pytest.raises(ValueError, match="delay"):
        jobs.add("C", depends_on=[a], delay=5)
    with pytest.raises(TypeError, match="depends_on"):
        jobs.manager.enqueue_batch([{"n": 1}], record, depends_on=[a])
    with pytest.raises(TypeError, match="list"):
        jobs.add("C", depends_on=a)


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_of_waiting_c_ends_it_and_it_never_runs(jobs: Jobs, raw_redis: redis.Redis) -> None:
    a = jobs.add("A")
    c = jobs.add("C", depends_on=[a])

    assert jobs.manager.cancel(c) == "cancelled"
    assert jobs.manager.cancel(c) == "already_finished"
    run_burst(jobs.config)

    assert jobs.runs(raw_redis) == ["A"]
    assert jobs.status(c) == "cancelled"
    assert no_dependency_keys_left(raw_redis, jobs.config)


def test_cancel_of_a_cascades_to_c(jobs: Jobs, raw_redis: redis.Redis) -> None:
    a = jobs.add("A")
    c = jobs.add("C", depends_on=[a])

    assert jobs.manager.cancel(a) == "cancelled"
    run_burst(jobs.config)

    assert jobs.runs(raw_redis) == []
    assert jobs.status(c) == "failed"
    assert jobs.failures(raw_redis)[c]["dependency_status"] == "cancelled"


def test_purging_a_dependency_fails_c_instead_of_stranding_it(
    jobs: Jobs, raw_redis: redis.Redis
) -> None:
    """A purged item never completes: its dependents fail (as for a cancel), never wait on."""
    a = jobs.add("A", queue_name="upstream")
    c = jobs.add("C", depends_on=[a])
    d = jobs.add("D", depends_on=[a], on_dependency_failure="run")

    assert jobs.manager.purge_queue("upstream") == 1
    run_burst(jobs.config)

    assert jobs.runs(raw_redis) == ["D"]
    assert (jobs.status(c), jobs.status(d)) == ("failed", "completed")
    failure = jobs.failures(raw_redis)[c]
    assert (failure["dependency_id"], failure["dependency_status"]) == (a, "purged")
    assert no_dependency_keys_left(raw_redis, jobs.config)


# --- lost replies: re-sent scripts write nothing twice ----------------------------------------


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    for name in SCRIPT_NAMES:  # loaded: a dropped EVALSHA is one the server really ran
        raw_redis.script_load(script_source(name))
    breakers.reset()
    with FaultProxy(redis_server.port) as made:
        yield made
    breakers.reset()


def test_resent_enqueue_dependent_stores_once(
    make_config: Callable[..., QueueConfig],
    proxy: FaultProxy,
    redis_url: str,
    key_prefix: str,
    raw_redis: redis.Redis,
) -> None:
    jobs = Jobs(make_config(), redis_url, f"{key_prefix}log")
    a = jobs.add("A")
    proxied = Jobs(make_config(redis_url=proxy.url, connection_timeout=2.0), redis_url, jobs.log)
    fired = proxy.drop_reply(EVALSHA)

    c = proxied.add("C", depends_on=[a])

    assert fired.is_set() and proxy.requests_matching(EVALSHA) == 2  # re-sent
    assert jobs.status(c) == "waiting_for_dependencies"
    assert raw_redis.smembers(jobs.config.keys.dependents(a)) == {c.encode()}
    assert jobs.config.get_metrics()["enqueued"] == 2


def test_resent_resolve_dependents_writes_nothing_twice(
    make_config: Callable[..., QueueConfig],
    proxy: FaultProxy,
    redis_url: str,
    key_prefix: str,
    raw_redis: redis.Redis,
) -> None:
    jobs = Jobs(make_config(), redis_url, f"{key_prefix}log")
    a = jobs.add("A", fail=True)
    b = jobs.add("B")
    c = jobs.add("C", depends_on=[a], operation_id="child-fails")
    d = jobs.add("D", depends_on=[b], operation_id="child-runs")
    run_burst(jobs.config, queues=["nothing"])  # no-op: scripts loaded, nothing run
    proxied = make_config(redis_url=proxy.url, connection_timeout=2.0)
    proxied.register_callback(record)
    resolve_sha = script_source("resolve_dependents")
    sha = hashlib.sha1(resolve_sha.encode()).hexdigest().encode()
    fired = proxy.drop_reply(sha)  # the first resolution's reply is lost
    proxy.drop_reply(sha)  # and the second's

    run_burst(proxied, max_workers=1)

    assert fired.is_set() and proxy.requests_matching(sha) >= 4
    assert sorted(jobs.runs(raw_redis)) == ["A", "B", "D"]
    assert jobs.status(c) == "failed" and jobs.status(d) == "completed"
    assert list(jobs.failures(raw_redis)) == [c, a]  # each once
    assert jobs.config.get_metrics()["failed"] == 2
    assert no_dependency_keys_left(raw_redis, jobs.config)


# --- async manager ---------------------------------------------------------------------------


def test_async_manager_enqueues_dependents(jobs: Jobs, raw_redis: redis.Redis) -> None:
    async def main() -> tuple[str, str, str | None]:
        manager = AsyncQueueManager(jobs.config)
        entity = {"url": jobs.url, "log": jobs.log}
        try:
            a = await manager.enqueue({**entity, "name": "A"}, record, queue_name="deps")
            c = await manager.enqueue(
                {**entity, "name": "C"}, record, queue_name="deps", depends_on=[a["operation_id"]]
            )
            with pytest.raises(ValueError, match="unknown"):
                await manager.enqueue({**entity, "name": "X"}, record, depends_on=["missing"])
            info = await manager.get_operation(c["operation_id"])
            return a["operation_id"], c["operation_id"], info["status"] if info else None
        finally:
            await manager.aclose()

    _, c, status = asyncio.run(main())
    assert status == "waiting_for_dependencies"
    run_burst(jobs.config, max_workers=1)
    assert jobs.runs(raw_redis) == ["A", "C"]
    assert jobs.status(c) == "completed"


# --- where operators see the status --------------------------------------------------------------


def test_waiting_status_shows_in_cli_job_and_dashboard(
    jobs: Jobs, redis_url: str, key_prefix: str
) -> None:
    a = jobs.add("A")
    c = jobs.add("C", depends_on=[a])

    shown = cli_runner().invoke(
        cli, ["--url", redis_url, "--prefix", key_prefix, "job", c, "--json"]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["status"] == "waiting_for_dependencies"
    with TestClient(create_app(jobs.config, token=TOKEN)) as client:
        login(client)
        assert "waiting_for_dependencies" in client.get(f"/operations/{c}").text


def test_a_retry_that_ends_cancelled_fails_its_dependents(
    jobs: Jobs, raw_redis: redis.Redis
) -> None:
    # Given A runs (claimed by hand) and its cancel is requested; its worker missed the
    # request, the run fails and asks for a retry: schedule_retry.lua ends it cancelled.
    a = jobs.add("A", retry_config=QueueRetryConfig(max_attempts=3))
    c = jobs.add("C", depends_on=[a])

    async def main() -> bool:
        client = jobs.config.make_async_client()
        try:
            broker = WorkerBroker(jobs.config, client, "worker-a")
            [item] = await broker.claim(jobs.config.keys.claim_order(["deps"]), 1)
            assert await asyncio.to_thread(jobs.manager.cancel, a) == "cancelling"
            kept = await broker.schedule_retry(
                item,
                item.raw,
                jobs.config.clock.time() + 60,
                operation_id=a,
                run_ms=1,
                queue_priority="deps:normal",
                wait_ms=1,
                attempts=1,
                last_error="{}",
            )
            assert kept
            return broker.dependents_waiting
        finally:
            await client.aclose()

    asyncio.run(main())
    assert jobs.status(a) == "cancelled"
    # When a worker resolves what the outbox holds
    run_burst(jobs.config)
    # Then C failed with A's status, and never ran
    assert jobs.status(c) == "failed"
    assert jobs.failures(raw_redis)[c]["dependency_status"] == "cancelled"
    assert jobs.runs(raw_redis) == []


def test_an_expired_dependency_fails_c(
    make_config: Callable[..., QueueConfig], redis_url: str, key_prefix: str, raw_redis: redis.Redis
) -> None:
    clock = FakeClock()
    jobs = Jobs(make_config(clock=clock), redis_url, f"{key_prefix}log")
    a = jobs.add("A", expires=10)
    c = jobs.add("C", depends_on=[a])
    clock.advance(10)

    run_burst(jobs.config)

    assert jobs.status(a) == "expired" and jobs.status(c) == "failed"
    assert jobs.failures(raw_redis)[c]["dependency_status"] == "expired"
    assert jobs.runs(raw_redis) == []
    assert no_dependency_keys_left(raw_redis, jobs.config)


def test_a_dependent_enqueue_waits_for_replicas_like_any_enqueue(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # The suite's server has no replica: with min_replicas=1 every WAIT falls short.
    plain = QueueManager(make_config())
    a = plain.enqueue({"n": 1}, record, queue_name="deps")["operation_id"]
    durable = QueueManager(make_config(min_replicas=1, replica_timeout=0.05))

    with pytest.raises(ReplicationTimeoutError, match="only 0 of min_replicas=1"):
        durable.enqueue({"n": 2}, record, queue_name="deps", depends_on=[a], operation_id="c-1")

    assert plain.get_operation("c-1")["status"] == "waiting_for_dependencies"  # type: ignore[index]


def test_an_outbox_entry_left_by_a_dead_worker_is_resolved_by_another(
    jobs: Jobs, raw_redis: redis.Redis
) -> None:
    # Given A acked by a worker that died before resolving its dependents (a bare broker:
    # the ack script pushed A onto the outbox, and nobody resolved it)
    a = jobs.add("A")
    c = jobs.add("C", depends_on=[a])

    async def ack_and_die() -> None:
        client = jobs.config.make_async_client()
        try:
            broker = WorkerBroker(jobs.config, client, "worker-dies")
            [item] = await broker.claim(jobs.config.keys.claim_order(["deps"]), 1)
            completion = Completion(
                item=item,
                operation_id=a,
                dedup_key=None,
                run_ms=1,
                queue_priority="deps:normal",
                wait_ms=1,
                result_json='"A"',
                result_ttl=60,
            )
            assert await broker.ack([completion], jobs.config.clock.time()) == [ACKED]
            assert broker.dependents_waiting
        finally:
            await client.aclose()

    asyncio.run(ack_and_die())
    assert raw_redis.lrange(jobs.config.keys.deps_outbox, 0, -1) == [f"{a} completed".encode()]
    assert jobs.status(c) == "waiting_for_dependencies"
    # When another worker runs: its maintenance reads the outbox
    run_burst(jobs.config)
    # Then C ran once
    assert jobs.runs(raw_redis) == ["C"]
    assert no_dependency_keys_left(raw_redis, jobs.config)
