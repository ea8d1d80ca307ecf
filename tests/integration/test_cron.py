"""Periodic jobs on the real server: exactly one enqueue per tick across workers (DST days
included), catch-up policies, crashes between the fire steps, lost replies, changed schedules.

Time is the injected FakeClock: each test moves it and runs the cron passes itself (several
CronRunner instances stand for several workers), or lets real QueueWorkers run them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from queue_system import QueueConfig, QueueManager, QueueWorker
from queue_system.core.envelope import as_text
from queue_system.core.schedule import CronSpec, operation_id_for
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.engine.scripts import SCRIPT_NAMES, script_source
from queue_system.worker import cron as cron_module
from queue_system.worker.cron import CLAIM_TIMEOUT_S, CronRunner
from tests.support.clock import FakeClock
from tests.support.proxy import FaultProxy
from tests.support.waiting import async_wait_until, wait_until

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
RAN: list[dict[str, Any]] = []


def report(data: dict[str, Any]) -> None:
    """The periodic job of these tests."""
    RAN.append(data)


def other_report(data: dict[str, Any]) -> None:
    RAN.append(data)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    RAN.clear()
    yield
    RAN.clear()


def berlin_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp() * 1000)


class Fleet:
    """``count`` cron runners (one per simulated worker, each with its own connection) that
    record which runner enqueued which tick (the real enqueue still runs)."""

    def __init__(self, config: QueueConfig, count: int) -> None:
        self.config = config
        self.count = count
        self.enqueued: list[tuple[int, str]] = []  # (runner, operation id) per enqueue call
        self.passes = 0

    async def __aenter__(self) -> Fleet:
        self.clients = [self.config.make_async_client() for _ in range(self.count)]
        self.runners = [
            CronRunner(config=self.config, client=client, worker_id=f"w{i}")
            for i, client in enumerate(self.clients)
        ]
        for index, runner in enumerate(self.runners):
            runner.enqueue = self._spy(index, runner.enqueue)  # type: ignore[method-assign]
        return self

    def _spy(self, index: int, enqueue: Callable[..., Any]) -> Callable[..., Any]:
        async def spy(spec: CronSpec, ticks: list[int]) -> list[str]:
            ids: list[str] = await enqueue(spec, ticks)
            self.enqueued.extend((index, op_id) for op_id in ids)
            return ids

        return spy

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            await client.aclose()

    async def race(self) -> None:
        """One pass of every runner, concurrently. Who sends first turns each pass, so that
        several runners win ticks however the machine schedules them (a loaded machine let
        the first one win every tick)."""
        self.passes += 1
        turn = self.passes % self.count
        order = self.runners[turn:] + self.runners[:turn]
        await asyncio.gather(*(runner.run_once() for runner in order))


def waiting_ids(raw_redis: redis.Redis, config: QueueConfig, queue: str) -> list[str]:
    items = raw_redis.lrange(config.keys.queue(queue), 0, -1)
    return sorted(json.loads(item)["id"] for item in items)


def expected_ticks(spec: CronSpec, start_ms: int, end_ms: int) -> list[int]:
    ticks, tick = [], spec.next_tick(start_ms)
    while tick is not None and tick <= end_ms:
        ticks.append(tick)
        tick = spec.next_tick(tick)
    return ticks


# --- exactly once per tick, three workers, DST days -------------------------------------------


@pytest.mark.parametrize(
    ("day", "hourly_ticks"),
    [((2026, 3, 29), 23), ((2026, 10, 25), 25)],
    ids=["spring-forward", "fall-back"],
)
def test_three_workers_fire_each_tick_once_over_a_dst_day_in_berlin(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    day: tuple[int, int, int],
    hourly_ticks: int,
) -> None:
    # Given: an hourly and a daily (02:30, inside the DST change) schedule in Berlin
    start = berlin_ms(*day) - 5 * 60_000
    end = start + 25 * 3600_000 + 10 * 60_000
    clock = FakeClock(start / 1000)
    config = make_config(clock=clock)
    hourly = config.cron("0 * * * *", report, timezone="Europe/Berlin", queue_name="hourly")
    daily = config.cron(
        "30 2 * * *", report, timezone="Europe/Berlin", queue_name="daily", name="daily"
    )

    async def simulate() -> list[tuple[int, str]]:
        async with Fleet(config, 3) as fleet:
            # When: three workers race a pass every 5 minutes of the day
            while clock.now * 1000 < end:
                await fleet.race()
                clock.advance(300)
            return fleet.enqueued

    enqueued = asyncio.run(simulate())

    # Then: each tick was enqueued by exactly one worker, once
    calls = Counter(op_id for _, op_id in enqueued)
    assert all(n == 1 for n in calls.values()), calls.most_common(3)
    hourly_expected = expected_ticks(hourly, start, end)
    next_day = dt.date(*day) + dt.timedelta(days=1)
    day_start, day_end = berlin_ms(*day), berlin_ms(next_day.year, next_day.month, next_day.day)
    assert len([t for t in hourly_expected if day_start <= t < day_end]) == hourly_ticks
    assert waiting_ids(raw_redis, config, "hourly") == sorted(
        operation_id_for(hourly.name, t) for t in hourly_expected
    )
    daily_expected = expected_ticks(daily, start, end)
    assert len(daily_expected) == 1  # once on both the 23-hour and the 25-hour day
    assert waiting_ids(raw_redis, config, "daily") == [operation_id_for("daily", daily_expected[0])]
    assert len({runner for runner, _ in enqueued}) > 1  # the race was real: several won ticks


def test_three_queue_workers_run_each_tick_once(
    make_config: Callable[..., QueueConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cron_module, "CRON_POLL_S", 0.02)
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    config.cron(every=dt.timedelta(minutes=1), processor=report, entity={"job": "sync"})

    async def main() -> None:
        workers = [QueueWorker(config, max_workers=1) for _ in range(3)]
        for worker in workers:
            await worker.start()
        try:
            for tick in range(1, 6):
                clock.now = (1_800_000_000 // 60 + tick) * 60.0  # exactly on the tick
                await async_wait_until(lambda n=tick: len(RAN) >= n, message=f"tick {tick}")
            # Another pass at the same time fires nothing more
            runner = CronRunner(config=config, client=workers[0]._client, worker_id="probe")
            assert await runner.run_once() == []
        finally:
            await asyncio.gather(*(worker.stop() for worker in workers))

    asyncio.run(main())
    assert RAN == [{"job": "sync"}] * 5


def test_the_enqueued_tick_line_carries_the_operation_id_field(
    make_config: Callable[..., QueueConfig], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    spec = config.cron(every=dt.timedelta(minutes=1), processor=report, entity={"job": "log"})

    async def one_tick() -> list[str]:
        client = config.make_async_client()
        try:
            runner = CronRunner(config=config, client=client, worker_id="w")
            await runner.run_once()
            clock.now = (1_800_000_000 // 60 + 1) * 60.0
            return await runner.run_once()
        finally:
            await client.aclose()

    with caplog.at_level(logging.INFO, logger="queue_system"):
        asyncio.run(one_tick())

    lines = [r for r in caplog.records if "enqueued the" in r.getMessage()]
    assert lines
    for line in lines:
        assert line.operation_id.startswith(f"cron:{spec.name}:")  # type: ignore[attr-defined]
        assert line.operation_id in line.getMessage()  # type: ignore[attr-defined]


# --- catch-up after no worker ran -------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "fired_hours"),
    [("none", []), ("last", [3]), ("all", [1, 2, 3])],
)
def test_catch_up_policy_after_workers_were_down(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    policy: str,
    fired_hours: list[int],
) -> None:
    noon = berlin_ms(2026, 6, 1, 12)
    clock = FakeClock(noon / 1000)
    config = make_config(clock=clock)
    config.cron("0 * * * *", report, queue_name="hourly", catch_up=policy)  # type: ignore[arg-type]

    async def main() -> None:
        async with Fleet(config, 1) as fleet:
            await fleet.race()  # Given: the noon tick fired
            clock.advance(3 * 3600 + 20 * 60)  # When: no worker ran until 15:20
            await fleet.race()
            await fleet.race()

    asyncio.run(main())
    spec = config.schedules[f"{__name__}:report"]
    assert waiting_ids(raw_redis, config, "hourly") == sorted(
        operation_id_for(spec.name, noon + h * 3600_000) for h in [0, *fired_hours]
    )
    assert int(raw_redis.hget(config.keys.cron_last, spec.name)) == noon + 3 * 3600_000


def test_skipped_and_fired_ticks_never_fire_again_after_their_records_expire(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    spec = config.cron(every=60, processor=report)
    tick = (1_800_000_000 // 60 + 1) * 60_000
    clock.now = tick / 1000

    async def main() -> list[tuple[int, str]]:
        async with Fleet(config, 2) as fleet:
            await fleet.runners[0].run_once()
            # The item ran long ago and its status record expired; the list is emptied
            raw_redis.delete(config.keys.operation(operation_id_for(spec.name, tick)))
            raw_redis.delete(config.keys.queue(spec.queue_name))
            await fleet.runners[1].run_once()  # a slow worker looks at the same time
            return fleet.enqueued

    assert asyncio.run(main()) == [(0, operation_id_for(spec.name, tick))]
    assert raw_redis.llen(config.keys.queue(spec.queue_name)) == 0


def test_worker_that_read_the_last_tick_before_another_fired_it_does_not_fire_it(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    spec = config.cron(every=60, processor=report)
    tick = (1_800_000_000 // 60 + 1) * 60_000
    clock.now = tick / 1000

    async def main() -> list[tuple[int, str]]:
        async with Fleet(config, 2) as fleet:
            fast, slow = fleet.runners
            claim = slow.scripts.cron_claim

            async def claim_late(**kwargs: Any) -> Any:
                # Between the slow worker's read and its claim, the fast one fires the tick
                # and the item's record expires (its enqueue would no longer be a duplicate)
                await fast.run_once()
                raw_redis.delete(config.keys.operation(operation_id_for(spec.name, tick)))
                return await claim(**kwargs)

            object.__setattr__(slow.scripts, "cron_claim", claim_late)
            await slow.run_once()
            return fleet.enqueued

    assert asyncio.run(main()) == [(0, operation_id_for(spec.name, tick))]
    assert raw_redis.llen(config.keys.queue(spec.queue_name)) == 1


# --- crashes and lost replies between the fire steps -------------------------------------------


class Crash(Exception):
    """A worker dying at this point (nothing after it runs)."""


def test_worker_dying_between_claim_and_enqueue_loses_no_tick(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    spec = config.cron(every=60, processor=report)
    tick = (1_800_000_000 // 60 + 1) * 60_000
    clock.now = tick / 1000

    async def crash(*args: object) -> list[str]:
        raise Crash

    async def main() -> list[tuple[int, str]]:
        async with Fleet(config, 2) as fleet:
            fleet.runners[0].enqueue = crash  # type: ignore[method-assign]
            with pytest.raises(Crash):  # Given: worker 0 claimed the tick and died
                await fleet.runners[0].run_once()
            await fleet.runners[1].run_once()  # its claim is young: left alone
            assert raw_redis.llen(config.keys.queue(spec.queue_name)) == 0
            clock.advance(CLAIM_TIMEOUT_S)  # When: the claim is old enough
            await fleet.runners[1].run_once()
            await fleet.runners[1].run_once()
            return fleet.enqueued

    # Then: worker 1 enqueued the tick, once; the claim is closed
    assert asyncio.run(main()) == [(1, operation_id_for(spec.name, tick))]
    assert waiting_ids(raw_redis, config, spec.queue_name) == [operation_id_for(spec.name, tick)]
    assert raw_redis.hlen(config.keys.cron_claims) == 0


def test_worker_dying_between_enqueue_and_closing_the_claim_fires_once(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    spec = config.cron(every=60, processor=report)
    tick = (1_800_000_000 // 60 + 1) * 60_000
    clock.now = tick / 1000

    async def main() -> None:
        async with Fleet(config, 2) as fleet:
            dying = fleet.runners[0]
            real_done = dying.scripts.cron_done

            async def crash(**kwargs: object) -> object:
                raise Crash

            object.__setattr__(dying.scripts, "cron_done", crash)
            with pytest.raises(Crash):
                await dying.run_once()
            object.__setattr__(dying.scripts, "cron_done", real_done)
            clock.advance(CLAIM_TIMEOUT_S + 61)  # the next tick is due too
            await fleet.runners[1].run_once()  # finishes the open claim (a duplicate)
            await fleet.runners[1].run_once()  # then fires the next tick

    asyncio.run(main())
    assert waiting_ids(raw_redis, config, spec.queue_name) == sorted(
        operation_id_for(spec.name, t) for t in (tick, tick + 60_000)
    )
    assert raw_redis.hlen(config.keys.cron_claims) == 0


def test_worker_whose_enqueue_failed_finishes_its_own_claim_at_once(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    spec = config.cron(every=60, processor=report)
    tick = (1_800_000_000 // 60 + 1) * 60_000
    clock.now = tick / 1000

    async def main() -> None:
        async with Fleet(config, 1) as fleet:
            runner = fleet.runners[0]
            enqueue = runner.enqueue

            async def unreachable(*args: object) -> list[str]:
                raise redis.ConnectionError("Redis went away")

            runner.enqueue = unreachable  # type: ignore[method-assign]
            with pytest.raises(redis.ConnectionError):  # the loop backs off, then passes again
                await runner.run_once()
            runner.enqueue = enqueue  # type: ignore[method-assign]
            await runner.run_once()  # Redis is back, at the same time: no 10 s wait

    asyncio.run(main())
    assert waiting_ids(raw_redis, config, spec.queue_name) == [operation_id_for(spec.name, tick)]
    assert raw_redis.hlen(config.keys.cron_claims) == 0


@pytest.fixture
def proxy(redis_server: EmbeddedRedis, raw_redis: redis.Redis) -> Iterator[FaultProxy]:
    for name in SCRIPT_NAMES:  # loaded first: a dropped EVALSHA is one the server ran
        raw_redis.script_load(script_source(name))
    with FaultProxy(redis_server.port) as made:
        yield made


@pytest.mark.parametrize("script", ["cron_claim", "cron_done", "enqueue"])
def test_lost_reply_of_a_fire_step_fires_the_tick_once(
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
    proxy: FaultProxy,
    script: str,
) -> None:
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock, redis_url=proxy.url)
    spec = config.cron(every=60, processor=report)
    tick = (1_800_000_000 // 60 + 1) * 60_000
    clock.now = tick / 1000
    sha = raw_redis.script_load(script_source(script)).encode()

    async def main() -> None:
        async with Fleet(config, 2) as fleet:
            proxy.drop_reply(sha)  # the server runs it; the reply is lost; redis-py re-sends
            await fleet.race()
            await fleet.race()

    asyncio.run(main())
    assert proxy.requests_matching(sha) >= 2  # it was re-sent
    assert waiting_ids(raw_redis, config, spec.queue_name) == [operation_id_for(spec.name, tick)]
    assert raw_redis.hlen(config.keys.cron_claims) == 0


# --- changed or removed schedules --------------------------------------------------------------


def test_changed_schedule_takes_effect_on_next_deploy(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given: a deploy firing every 5 minutes
    start = berlin_ms(2026, 6, 1, 12)
    clock = FakeClock(start / 1000)
    old = make_config(clock=clock)
    old.cron("*/5 * * * *", report, name="report", queue_name="reports")

    async def run(config: QueueConfig, minutes: int) -> None:
        async with Fleet(config, 1) as fleet:
            for _ in range(minutes):
                await fleet.race()
                clock.advance(60)

    asyncio.run(run(old, 15))  # 12:00, 12:05, 12:10
    # When: the next deploy says every 10 minutes, with another processor, same name
    new = make_config(clock=clock)
    new.cron("*/10 * * * *", other_report, name="report", queue_name="reports")
    asyncio.run(run(new, 21))  # from 12:15 to 12:35: 12:20, 12:30
    fired = [int(op.rpartition(":")[2]) for op in waiting_ids(raw_redis, new, "reports")]
    assert sorted(fired) == [start + m * 60_000 for m in (0, 5, 10, 20, 30)]
    published = json.loads(raw_redis.hget(new.keys.cron_schedules, "report"))
    assert published["expression"] == "*/10 * * * *"
    assert published["processor"] == f"{__name__}:other_report"


# --- declaration errors ------------------------------------------------------------------------


def test_bad_declarations_fail_at_once(make_config: Callable[..., QueueConfig]) -> None:
    config = make_config(max_payload_bytes=1000)
    with pytest.raises(ValueError, match="larger than max_payload_bytes"):
        config.cron("0 9 * * *", report, entity={"blob": "x" * 1000})
    with pytest.raises(ValueError, match="invalid cron expression"):
        config.cron("every monday", report)
    with pytest.raises(ValueError, match="unknown timezone"):
        config.cron("0 9 * * *", report, timezone="Europe/Atlantis")
    with pytest.raises(TypeError, match="lambda or nested function"):
        config.cron("0 9 * * *", lambda data: None)
    with pytest.raises(TypeError, match="entity"):
        config.cron("0 9 * * *", report, entity=[1, 2])
    config.cron("0 9 * * *", report)
    with pytest.raises(ValueError, match="already declared"):
        config.cron("0 10 * * *", report)
    assert list(config.schedules) == [f"{__name__}:report"]


# --- worker processes ------------------------------------------------------------------------

WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from queue_system import QueueConfig, QueueWorker
    from tests.integration.test_cron import record_run
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2], lease_timeout=2.0)
    config.cron(every=1, processor=record_run, name="beat", entity={"url": sys.argv[1],
                "key": sys.argv[2] + "ran"})
    asyncio.run(QueueWorker(config, max_workers=2).run())
    """
)


def record_run(data: dict[str, Any]) -> None:
    """In the children: note one run."""
    client = redis.Redis.from_url(data["url"])
    client.rpush(data["key"], "1")
    client.close()


def fired_ticks(raw_redis: redis.Redis, config: QueueConfig) -> list[int]:
    pattern = config.keys.operation(operation_id_for("beat", 0)).removesuffix("0") + "*"
    return sorted(int(as_text(key).rpartition(":")[2]) for key in raw_redis.scan_iter(pattern))


@pytest.mark.slow
def test_three_worker_processes_fire_each_tick_once_and_survive_a_sigkill(
    redis_url: str,
    key_prefix: str,
    make_config: Callable[..., QueueConfig],
    raw_redis: redis.Redis,
) -> None:
    # Given: three worker processes running a schedule that ticks every second (real clock)
    config = make_config()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_CHILD, redis_url, key_prefix],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(3)
    ]
    try:
        wait_until(lambda: len(fired_ticks(raw_redis, config)) >= 3, timeout=30, message="ticks")
        # When: one worker is killed, the other two go on
        os.kill(children[0].pid, signal.SIGKILL)
        children[0].wait(timeout=10)
        seen = len(fired_ticks(raw_redis, config))
        wait_until(lambda: len(fired_ticks(raw_redis, config)) >= seen + 3, timeout=30)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    # Then: every tick from the first to the last was enqueued, each once (one status record
    # and one item per tick: a second enqueue of a tick would be a duplicate of its id)
    ticks = fired_ticks(raw_redis, config)
    assert ticks == list(range(ticks[0], ticks[-1] + 1000, 1000))
    assert config.get_metrics()["enqueued"] == len(ticks)


# --- the scripts, each answer ------------------------------------------------------------------


def test_cron_claim_and_done_answers(config: QueueConfig, raw_redis: redis.Redis) -> None:
    claim = raw_redis.register_script(script_source("cron_claim"))
    done = raw_redis.register_script(script_source("cron_done"))
    keys = [config.keys.cron_last, config.keys.cron_claims]
    ticks = '{"ticks":[60000],"n":"a"}'
    assert claim(keys=keys, args=["s", "", 60000, ticks]) == 1  # claimed
    assert claim(keys=keys, args=["s", "", 60000, ticks]) == 1  # the same call, re-sent
    assert claim(keys=keys, args=["s", "60000", 120000, '{"n":"b"}']) == 2  # still open
    assert done(keys=[config.keys.cron_claims], args=["s", ticks]) == 1
    assert done(keys=[config.keys.cron_claims], args=["s", ticks]) == 0  # re-sent
    assert claim(keys=keys, args=["s", "", 120000, ""]) == 0  # stale read: another moved it
    assert claim(keys=keys, args=["s", "60000", 120000, ""]) == 1  # skip only: no claim
    assert raw_redis.hget(config.keys.cron_last, "s") == b"120000"
    assert raw_redis.hlen(config.keys.cron_claims) == 0


def test_cron_item_has_the_shape_of_an_enqueued_item(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # The cron loop builds enqueue.lua's arguments itself (the worker cannot import the
    # producer): its item and status record must match what QueueManager.enqueue writes.
    clock = FakeClock(1_800_000_000.0)
    config = make_config(clock=clock)
    spec = config.cron(every=60, processor=report, entity={"a": 1}, queue_name="jobs")
    QueueManager(config).enqueue({"a": 1}, report, queue_name="jobs", operation_id="by-hand")

    async def fire() -> list[str]:
        async with Fleet(config, 1) as fleet:
            return await fleet.runners[0].enqueue(spec, [60_000])

    (cron_id,) = asyncio.run(fire())
    fired, by_hand = (json.loads(raw) for raw in raw_redis.lrange(config.keys.queue("jobs"), 0, -1))
    assert fired["id"] == cron_id
    assert {**fired, "id": "by-hand"} == by_hand
    record = raw_redis.hgetall(config.keys.operation(cron_id))
    reference = raw_redis.hgetall(config.keys.operation("by-hand"))
    assert {k: v for k, v in record.items() if k != b"nonce"} == {
        k: v for k, v in reference.items() if k != b"nonce"
    }


class TagMiddleware:
    """A before_enqueue hook that stamps meta, as a tracing middleware would."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def before_enqueue(self, envelope: dict[str, Any]) -> None:
        self.seen.append(envelope["id"])
        envelope["meta"]["tag"] = "from-middleware"


def test_cron_items_go_through_before_enqueue_middleware(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    tagger = TagMiddleware()
    config = make_config(clock=FakeClock(1_800_000_000.0))
    config.add_middleware(tagger)
    spec = config.cron(every=60, processor=report, entity={"a": 1}, queue_name="jobs")

    async def fire() -> list[str]:
        async with Fleet(config, 1) as fleet:
            return await fleet.runners[0].enqueue(spec, [60_000, 120_000])

    ids = asyncio.run(fire())
    assert tagger.seen == ids
    stored = [json.loads(raw) for raw in raw_redis.lrange(config.keys.queue("jobs"), 0, -1)]
    assert [item["meta"] for item in stored] == [{"tag": "from-middleware"}] * 2
