"""Sentinel: every part of the library reaches the master the Sentinels name, and follows it
across a failover.

Each test runs against a real group (tests/support/topology.py): a master, one replica and
three sentinels on free loopback ports, from the suite's own server binary. Data servers sit
on random ports, never localhost:6379: a client rebuilt from a Sentinel pool's settings (the
bug this module pins) would reach nothing there, or another server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel

from queue_system import (
    AsyncQueueManager,
    QueueAdmin,
    QueueConfig,
    QueueManager,
    QueueWorker,
    ReplicationTimeoutError,
)
from tests.support.burst import run_burst
from tests.support.cli import cli_runner
from tests.support.readme import run_readme_block
from tests.support.topology import SERVICE, SentinelGroup
from tests.support.waiting import wait_until
from utils import breakers

pytestmark = pytest.mark.slow

_lock = threading.Lock()
_runs: Counter[int] = Counter()  # entity "n" -> how many times a processor ran it


def record(data: dict[str, Any]) -> None:
    """The processor: counts each run of item ``n`` (this process only)."""
    with _lock:
        _runs[int(data["n"])] += 1


def slow_record(data: dict[str, Any]) -> None:
    """A job that outlives several lease timeouts: runs once only if renewals succeed."""
    time.sleep(float(data["seconds"]))  # simulated work, not a synchronisation
    record(data)


def runs() -> Counter[int]:
    with _lock:
        return Counter(_runs)


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    with _lock:
        _runs.clear()
    breakers.reset()
    yield
    breakers.reset()


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    """One group for the tests that do not fail it over."""
    with SentinelGroup() as made:
        yield made


@pytest.fixture
def own_group() -> Iterator[SentinelGroup]:
    """A group of this test's own (it will be failed over)."""
    with SentinelGroup() as made:
        yield made


@pytest.fixture
def configs() -> Iterator[Callable[..., QueueConfig]]:
    made: list[QueueConfig] = []

    def make(**kwargs: Any) -> QueueConfig:
        config = QueueConfig(**kwargs)
        config.register_callback(record)
        config.register_callback(slow_record)
        made.append(config)
        return config

    yield make
    for config in made:
        config.redis_client.close()


def master_client(group: SentinelGroup) -> redis.Redis:
    """A plain client on whichever server is master now (for assertions)."""
    host, port = group.master_address()
    return redis.Redis(host=host, port=port, socket_timeout=2)


def test_a_worker_given_a_sentinel_client_processes_items_on_the_real_master(
    group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    # Given a config built from a Sentinel-managed client (master not on localhost:6379)
    sentinel = redis.sentinel.Sentinel(group.sentinel_addresses, socket_timeout=2)
    config = configs(redis_client=sentinel.master_for(SERVICE), queue_prefix=key_prefix)
    manager = QueueManager(config)
    for n in range(5):
        manager.enqueue({"n": n}, record, queue_name="work")

    # When a burst worker drains the namespace
    try:
        run_burst(config, outage_limit=3.0)
    finally:
        _close(sentinel)

    # Then it ran every item, and the real master holds no waiting item any more
    assert runs() == Counter(range(5))
    with master_client(group) as client:
        assert client.llen(config.get_queue_key("work")) == 0


def test_async_producer_health_and_cli_work_from_a_sentinel_url(
    group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    config = configs(redis_url=group.url(), queue_prefix=key_prefix)

    async def produce() -> str:
        manager = AsyncQueueManager(config)
        try:
            result = await manager.enqueue({"n": 1}, record, queue_name="work")
        finally:
            await manager.aclose()
        return result["operation_id"]

    operation_id = asyncio.run(produce())
    with master_client(group) as client:
        assert client.llen(config.get_queue_key("work")) == 1
    operation = QueueManager(config).get_operation(operation_id)
    assert operation is not None and operation["status"] == "pending"

    health = QueueAdmin(config).get_system_health()
    host, port = group.master_address()
    assert health["redis_connected"] is True
    assert health["topology"] == {
        "mode": "sentinel",
        "service_name": SERVICE,
        "sentinels": [f"{h}:{p}" for h, p in group.sentinel_addresses],
        "role": "master",
        "master": f"{host}:{port}",
        "connected_replicas": 1,
    }
    assert health["queue_stats"]["work"]["normal"] == 1

    from queue_system.cli.main import cli

    result = cli_runner().invoke(cli, ["--url", group.url(), "--prefix", key_prefix, "health"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok:")


def test_an_async_client_factory_is_used_for_workers(
    group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    made: list[redis.asyncio.Redis] = []

    def factory() -> redis.asyncio.Redis:  # e.g. an application's own pool
        host, port = group.master_address()
        client = redis.asyncio.Redis(host=host, port=port, socket_timeout=2)
        made.append(client)
        return client

    sentinel = redis.sentinel.Sentinel(group.sentinel_addresses, socket_timeout=2)
    config = configs(
        redis_client=sentinel.master_for(SERVICE),
        async_client_factory=factory,
        queue_prefix=key_prefix,
    )
    try:
        QueueManager(config).enqueue({"n": 7}, record, queue_name="work")
        run_burst(config, outage_limit=3.0)
    finally:
        _close(sentinel)
    assert runs() == Counter([7])
    assert len(made) == 2  # the worker's loop and its lease-renewal thread each got one


def _close(sentinel: redis.sentinel.Sentinel) -> None:
    """redis-py leaves a Sentinel's own connections open when its master client closes."""
    for client in sentinel.sentinels:
        client.close()


def test_health_names_a_replica_reached_directly(
    group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    replica = next(s for s in group.servers if s.port != group.master_address()[1])
    health = QueueAdmin(configs(redis_url=replica.url, queue_prefix=key_prefix)).get_system_health()
    assert health["topology"]["mode"] == "standalone"
    assert health["topology"]["role"] == "slave"
    assert health["topology"]["master"] == f"127.0.0.1:{replica.port}"


class Producer(threading.Thread):
    """Enqueues numbered items until told to stop; keeps what was acknowledged."""

    def __init__(self, config: QueueConfig) -> None:
        super().__init__(daemon=True)
        self.manager = QueueManager(config)
        self.accepted: list[int] = []
        self.errors: Counter[str] = Counter()
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            try:
                self.manager.enqueue({"n": n}, record, queue_name="work")
            except Exception as exc:  # asserted below: only the documented kinds
                self.errors[type(exc).__name__] += 1
            else:
                self.accepted.append(n)
            n += 1
            self.halt.wait(0.005)  # a steady trickle of traffic, not a synchronisation


class WorkerThread(threading.Thread):
    """A QueueWorker running in its own event loop, stopped on request."""

    def __init__(self, worker: QueueWorker) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self.worker.run())
        except BaseException as exc:  # reported by the test
            self.failure = exc
        finally:
            self.loop.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.worker.stop(), self.loop).result(timeout=30)
        self.join(timeout=30)


def test_producers_and_workers_ride_a_master_sigkill_and_lose_no_acknowledged_item(
    own_group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    group = own_group
    lease_s = 2.0

    def config() -> QueueConfig:
        return configs(
            redis_url=group.url(),
            queue_prefix=key_prefix,
            connection_timeout=2.0,
            lease_timeout=lease_s,
            min_replicas=1,
            replica_timeout=0.5,
        )

    worker = WorkerThread(QueueWorker(config(), max_workers=4, outage_limit=60.0))
    producer = Producer(config())
    try:
        worker.start()
        producer.start()
        wait_until(lambda: len(runs()) >= 30, timeout=30, message="items flowing")

        # When the master is SIGKILLed and a sentinel promotes the replica
        old = group.master()
        new = group.kill_master_and_wait_failover()
        # and the old master comes back (empty) as a replica of the new one. The sentinels
        # would convert it by themselves, but on their own timing (over a minute on a loaded
        # machine, Redis 6.2): what is tested here is our clients, so the test does it at once.
        old.start()
        with redis.Redis(host="127.0.0.1", port=old.port, socket_timeout=2) as back:
            back.replicaof("127.0.0.1", new.port)
        wait_until(lambda: _replicas_of(new) == 1, timeout=60, message="old master back as replica")
        accepted_then = len(producer.accepted)
        wait_until(
            lambda: len(producer.accepted) > accepted_then + 30,
            timeout=30,
            message="the producer enqueues again",
        )
        # A job outliving several leases runs once: the renewal thread follows the new master.
        QueueManager(config()).enqueue(
            {"n": -1, "seconds": 3 * lease_s}, slow_record, queue_name="slow"
        )
        producer.halt.set()
        producer.join(timeout=30)

        # Then every acknowledged enqueue is processed by the same, never restarted, worker
        accepted = set(producer.accepted)
        wait_until(
            lambda: accepted <= set(runs()) and -1 in runs(),
            timeout=60,
            message="every acknowledged item processed",
        )
        assert worker.is_alive() and worker.worker.running, worker.failure
        assert runs()[-1] == 1
    finally:
        producer.halt.set()
        if worker.is_alive():
            worker.stop()
    # Producers saw only "unavailable" (no master yet) or "not replicated in time" errors.
    assert set(producer.errors) <= {"QueueUnavailableError", "ReplicationTimeoutError"}
    print(f"accepted {len(producer.accepted)} items, errors {dict(producer.errors)}")


def _replicas_of(server: Any) -> int:
    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2) as client:
        info = client.info("replication")
    return sum(
        1
        for i in range(int(info.get("connected_slaves", 0)))
        if info[f"slave{i}"]["state"] == "online"
    )


def test_min_replicas_enqueue_raises_when_no_replica_confirms(
    group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    config = configs(
        redis_url=group.url(), queue_prefix=key_prefix, min_replicas=2, replica_timeout=0.2
    )
    with pytest.raises(ReplicationTimeoutError, match="only 1 of min_replicas=2") as raised:
        QueueManager(config).enqueue({"n": 1}, record, queue_name="work", operation_id="op-1")
    assert raised.value.acknowledged == 1
    # the item is on the master: enqueueing the same operation again finds it
    again = QueueManager(configs(redis_url=group.url(), queue_prefix=key_prefix)).enqueue(
        {"n": 1}, record, queue_name="work", operation_id="op-1"
    )
    assert again["status"] == "duplicate"


@pytest.mark.parametrize("given", ["url", "sentinel client"])
def test_a_reply_timeout_does_not_shift_later_replies(
    group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str, given: str
) -> None:
    # redis-py's Sentinel connections keep a connection whose reply timed out (plain ones
    # drop it): its late reply would then answer the next command sent on it.
    if given == "url":
        config = configs(redis_url=group.url(), queue_prefix=key_prefix, connection_timeout=0.3)
    else:
        sentinel = redis.sentinel.Sentinel(group.sentinel_addresses, socket_timeout=0.3)
        master = sentinel.master_for(SERVICE, socket_timeout=0.3)
        config = configs(redis_client=master, queue_prefix=key_prefix)
    client = config.redis_client
    client.set(f"{key_prefix}a", "A")
    with pytest.raises(redis.TimeoutError):
        client.blpop([f"{key_prefix}nothing"], 0.6)
    with master_client(group) as observer:  # the server has sent its late reply
        wait_until(lambda: observer.info("clients")["blocked_clients"] == 0, timeout=5)

    pipe = client.pipeline(transaction=False)
    pipe.get(f"{key_prefix}a")
    pipe.incr(f"{key_prefix}n")
    assert pipe.execute() == [b"A", 1]
    if given != "url":
        _close(sentinel)


def test_min_replicas_enqueue_and_ack_return_once_the_replica_has_them(
    group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    config = configs(
        redis_url=group.url(), queue_prefix=key_prefix, min_replicas=1, replica_timeout=0.5
    )
    with master_client(group) as client:
        before = int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
        QueueManager(config).enqueue({"n": 3}, record, queue_name="work")
        run_burst(config)
        after = int(client.info("commandstats")["cmdstat_wait"]["calls"])
    assert runs() == Counter([3])
    assert after >= before + 2  # the enqueue's and the ack's
    assert "replication_timeouts" not in config.metrics.unlabelled()


def test_an_idle_worker_blocked_in_its_wait_follows_the_failover(
    own_group: SentinelGroup, configs: Callable[..., QueueConfig], key_prefix: str
) -> None:
    group = own_group
    config = configs(redis_url=group.url(), queue_prefix=key_prefix, connection_timeout=2.0)
    worker = WorkerThread(QueueWorker(config, max_workers=2, outage_limit=60.0))
    manager = QueueManager(config)
    try:
        worker.start()
        manager.enqueue({"n": 1}, record, queue_name="work")
        wait_until(lambda: runs() == Counter([1]), timeout=10, message="worker running")
        # Given the worker idles in its blocking wait for new items
        with master_client(group) as client:
            wait_until(lambda: client.info("clients")["blocked_clients"] >= 1, timeout=10)

        # When the master dies and the replica takes over
        group.kill_master_and_wait_failover()

        # Then an item enqueued on the new master is run by the same worker
        wait_until(lambda: _enqueued(manager, 2), timeout=30, message="enqueue on new master")
        wait_until(lambda: runs() == Counter([1, 2]), timeout=30, message="item after failover")
        assert worker.is_alive() and worker.worker.running, worker.failure
    finally:
        if worker.is_alive():
            worker.stop()


def _enqueued(manager: QueueManager, n: int) -> bool:
    try:
        manager.enqueue({"n": n}, record, queue_name="work", operation_id=f"op-{n}")
    except Exception:  # the breaker may still be open right after the failover
        return False
    return True


def test_readme_sentinel_example_runs_on_a_sentinel_url(
    group: SentinelGroup, tmp_path: Path
) -> None:
    stdout = run_readme_block("Sentinel", group.url(db=1), tmp_path)
    assert stdout.splitlines() == ["sent to ada@example.com", "sentinel master 1 replica"]
