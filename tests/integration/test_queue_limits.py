"""Pause/resume, max_concurrency and rate limits, enforced by claim.lua (real server).

Script-level tests call the claim through WorkerBroker; worker tests run in-process workers.
The fleet of worker processes and the SIGKILL case are in ``test_limits_fleet.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from queue_system import QueueAdmin, QueueConfig, QueueLimits, QueueManager, QueueWorker
from queue_system.worker.store import ClaimedItem, WorkerBroker
from tests.support.burst import run_burst
from tests.support.waiting import async_wait_until

RUNS: list[tuple[str, Any]] = []


def record(data: dict) -> None:
    RUNS.append((data["q"], data["n"]))


async def slow(data: dict) -> None:
    await asyncio.sleep(data.get("sleep", 0.01))
    RUNS.append((data["q"], data["n"]))


def ran(queue: str) -> list[Any]:
    return [n for q, n in RUNS if q == queue]


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


def enqueue(
    config: QueueConfig, queue: str, count: int, processor: Any = record, **kw: Any
) -> list[str]:
    manager = QueueManager(config)
    return [
        manager.enqueue({"q": queue, "n": n, **kw}, processor, queue_name=queue)["operation_id"]
        for n in range(count)
    ]


def with_broker(config: QueueConfig, body: Callable[[WorkerBroker], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = config.make_async_client()
        try:
            return await body(WorkerBroker(config, client, "w"))
        finally:
            await client.aclose()

    return asyncio.run(main())


def claim(
    config: QueueConfig, queues: list[str], count: int
) -> tuple[list[ClaimedItem], float | None]:
    async def body(broker: WorkerBroker) -> tuple[list[ClaimedItem], float | None]:
        items = await broker.claim(config.keys.claim_order(queues), count)
        return items, broker.held_back_s

    result: tuple[list[ClaimedItem], float | None] = with_broker(config, body)
    return result


def numbers(items: list[ClaimedItem]) -> list[int]:
    import json

    return [json.loads(item.raw)["entity"]["n"] for item in items]


# --- the claim script ---------------------------------------------------------------------------


def test_a_paused_queue_is_skipped_and_the_claim_moves_on(config: QueueConfig) -> None:
    enqueue(config, "a", 3)
    enqueue(config, "b", 2)
    QueueAdmin(config).pause("a")
    items, held = claim(config, ["a", "b"], 10)
    assert [item.list_key for item in items] == [config.get_queue_key("b")] * 2
    assert held is None  # a pause is not a limit: nothing to poll for
    assert config.redis_client.llen(config.get_queue_key("a")) == 3


def test_pausing_one_tier_leaves_the_others_claimable(config: QueueConfig) -> None:
    manager = QueueManager(config)
    manager.enqueue({"q": "a", "n": "h"}, record, queue_name="a", priority="high")
    manager.enqueue({"q": "a", "n": "n"}, record, queue_name="a", priority="normal")
    admin = QueueAdmin(config)
    assert admin.pause("a", "high") == ["high"]
    assert admin.paused() == {"a": ["high"]}
    items, _ = claim(config, ["a"], 10)
    assert [item.list_key for item in items] == [config.get_queue_key("a", "normal")]
    admin.resume("a", "high")
    assert admin.paused() == {}
    items, _ = claim(config, ["a"], 10)
    assert [item.list_key for item in items] == [config.get_queue_key("a", "high")]


def test_max_concurrency_caps_leased_items_across_tiers_and_claims(config: QueueConfig) -> None:
    manager = QueueManager(config)
    for n in range(3):
        manager.enqueue({"q": "a", "n": f"h{n}"}, record, queue_name="a", priority="high")
    for n in range(3):
        manager.enqueue({"q": "a", "n": f"n{n}"}, record, queue_name="a", priority="normal")
    enqueue(config, "b", 2)
    QueueAdmin(config).set_limits("a", QueueLimits(max_concurrency=4))

    # One claim: the queue's two tiers share its 4 slots; the claim moves on to b.
    items, held = claim(config, ["a", "b"], 100)
    assert numbers(items) == ["h0", "h1", "h2", "n0", 0, 1]
    assert held == 0.0  # held back by the cap: the caller polls
    # A second claim (another worker) gets nothing from a while the 4 leases stand.
    items, held = claim(config, ["a"], 100)
    assert items == [] and held == 0.0
    assert config.redis_client.llen(config.get_queue_key("a")) == 2  # n1, n2 wait in order
    assert QueueAdmin(config).get_limits()["a"]["slots"] == 4


def test_a_released_item_frees_its_slot(config: QueueConfig) -> None:
    # (Acked items free theirs too: the worker tests below drain capped queues.)
    enqueue(config, "a", 3)
    QueueAdmin(config).set_limits("a", QueueLimits(max_concurrency=1))

    async def body(broker: WorkerBroker) -> list[list[Any]]:
        lists = config.keys.claim_order(["a"])
        first = await broker.claim(lists, 10)
        blocked = await broker.claim(lists, 10)
        await broker.release([item.token for item in first])  # back at the head
        again = await broker.claim(lists, 10)
        return [numbers(first), numbers(blocked), numbers(again)]

    assert with_broker(config, body) == [[0], [], [0]]
    assert QueueAdmin(config).get_limits()["a"]["slots"] == 1  # the released lease no longer counts


def test_an_expired_lease_frees_its_slot_without_recovery(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config(lease_timeout=0.3)
    enqueue(config, "a", 2)
    QueueAdmin(config).set_limits("a", QueueLimits(max_concurrency=1))

    async def body(broker: WorkerBroker) -> tuple[list[Any], list[Any], float]:
        lists = config.keys.claim_order(["a"])
        first = numbers(await broker.claim(lists, 10))
        started = time.monotonic()
        second: list[ClaimedItem] = []

        async def claimed() -> bool:
            second.extend(await broker.claim(lists, 10))
            return bool(second)

        await async_wait_until(claimed, timeout=5, message="slot freed by the lease's end")
        return first, numbers(second), time.monotonic() - started

    first, second, waited = with_broker(config, body)
    assert (first, second) == ([0], [1])
    assert waited < 0.3 + 0.5  # within the lease (plus polling), not at a recovery pass


def test_rate_limit_allows_n_claims_per_window_and_says_when_room_frees(
    config: QueueConfig,
) -> None:
    enqueue(config, "a", 8)
    enqueue(config, "b", 1)
    QueueAdmin(config).set_limits("a", QueueLimits(rate_limit="5/m"))
    items, held = claim(config, ["a", "b"], 3)
    assert numbers(items) == [0, 1, 2] and held is None
    items, held = claim(config, ["a", "b"], 10)
    assert numbers(items) == [3, 4, 0]  # a's window is full; b is not slowed
    assert held is not None and 59.0 < held <= 60.001
    items, held = claim(config, ["a"], 10)
    assert items == [] and held is not None and held > 59.0
    assert config.redis_client.llen(config.get_queue_key("a")) == 3  # 5, 6, 7 wait in order
    starts = config.keys.limit_starts("a")
    assert config.redis_client.zcard(starts) == 5
    assert QueueAdmin(config).get_limits()["a"]["recent_claims"] == 5
    assert 59_000 < config.redis_client.pttl(starts) <= 60_000


def test_no_wait_is_reported_when_a_limited_list_is_empty(config: QueueConfig) -> None:
    enqueue(config, "a", 2)
    QueueAdmin(config).set_limits("a", QueueLimits(max_concurrency=2))
    items, held = claim(config, ["a"], 10)
    assert len(items) == 2 and held is None


def test_a_resent_claim_answers_from_its_receipt_without_counting_again(
    config: QueueConfig,
) -> None:
    enqueue(config, "a", 4)
    QueueAdmin(config).set_limits("a", QueueLimits(max_concurrency=3, rate_limit="3/m"))

    async def body(broker: WorkerBroker) -> tuple[list[Any], list[Any]]:
        lists = config.keys.claim_order(["a"])
        keys, args = (
            broker.claim_keys(lists, "same-call"),
            broker.claim_args(10, start_now=0, prune=False, list_keys=lists),
        )
        first = await broker.scripts.claim(keys=keys, args=args)
        again = await broker.scripts.claim(keys=keys, args=args)
        return first, again

    first, again = with_broker(config, body)
    assert first[2:] == again[2:] and (len(first) - 2) // 3 == 3  # the same 3 items
    assert config.redis_client.scard(config.keys.limit_running("a")) == 3
    assert config.redis_client.zcard(config.keys.limit_starts("a")) == 3


# --- limits in Redis: config vs runtime -----------------------------------------------------------


def test_workers_write_the_config_limits_unless_set_at_runtime(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config(
        limits={"a": QueueLimits(max_concurrency=2), "b": QueueLimits(rate_limit="9/s")}
    )
    admin = QueueAdmin(config)
    admin.set_limits("b", QueueLimits(rate_limit="1/s"))  # an operator's value
    assert with_broker(config, lambda broker: broker.seed_limits()) == 1
    found = admin.get_limits()
    assert (found["a"]["max_concurrency"], found["a"]["source"]) == (2, "config")
    assert (found["b"]["rate_limit"], found["b"]["source"]) == ("1/s", "runtime")

    # A new deploy with other values in code: config-sourced values follow it.
    config2 = make_config(limits={"a": QueueLimits(max_concurrency=5), "b": QueueLimits()})
    with_broker(config2, lambda broker: broker.seed_limits())
    found = admin.get_limits()
    assert found["a"]["max_concurrency"] == 5 and found["b"]["rate_limit"] == "1/s"

    # Clearing the runtime value lets the code's value apply at the next start.
    assert admin.clear_limits("b") is True
    with_broker(config, lambda broker: broker.seed_limits())
    assert admin.get_limits()["b"]["rate_limit"] == "9/s"

    # Code that declares no limit removes a config-sourced one.
    with_broker(config2, lambda broker: broker.seed_limits())
    assert "b" not in admin.get_limits()


def test_an_empty_runtime_value_overrides_the_config(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config(limits={"a": QueueLimits(max_concurrency=1)})
    admin = QueueAdmin(config)
    admin.set_limits("a", QueueLimits())
    with_broker(config, lambda broker: broker.seed_limits())
    found = admin.get_limits()["a"]
    assert (found["max_concurrency"], found["source"]) == (None, "runtime")
    enqueue(config, "a", 3)
    items, held = claim(config, ["a"], 10)
    assert len(items) == 3 and held is None


# --- workers --------------------------------------------------------------------------------------


def test_pause_stops_a_waiting_worker_and_resume_wakes_it(config: QueueConfig) -> None:
    admin = QueueAdmin(config)

    async def main() -> None:
        worker = QueueWorker(config, max_workers=1, queues=["a", "b"])
        await worker.start()
        try:
            admin.pause("a")
            enqueue(config, "a", 5)  # wakes the idle worker: its claim skips a
            enqueue(config, "b", 1)
            await async_wait_until(lambda: ran("b") == [0], timeout=5, message="b ran")
            assert ran("a") == []
            assert config.redis_client.llen(config.get_queue_key("a")) == 5
            resumed = time.monotonic()
            admin.resume("a")
            await async_wait_until(lambda: len(ran("a")) == 5, timeout=1.0, message="a resumed")
            assert time.monotonic() - resumed < 1.0
            assert ran("a") == [0, 1, 2, 3, 4]  # in order
        finally:
            await worker.stop()

    asyncio.run(main())


def test_pause_stops_a_busy_worker_claiming_within_a_second(config: QueueConfig) -> None:
    admin = QueueAdmin(config)
    enqueue(config, "a", 400, slow, sleep=0.005)

    async def main() -> None:
        worker = QueueWorker(config, max_workers=4, queues=["a", "b"])
        await worker.start()
        try:
            await async_wait_until(lambda: len(ran("a")) >= 20, timeout=10, message="running")
            paused = time.monotonic()
            admin.pause("a")
            # What was leased before the pause finishes; nothing more is claimed.
            await async_wait_until(
                lambda: config.redis_client.hlen(config.keys.inflight) == 0,
                timeout=1.0,
                message="in-flight items of the paused queue done",
            )
            assert time.monotonic() - paused < 1.0
            done = len(ran("a"))
            enqueue(config, "b", 1)  # proof the worker still claims
            await async_wait_until(lambda: ran("b") == [0], timeout=5, message="b ran")
            assert len(ran("a")) == done
            assert config.redis_client.llen(config.get_queue_key("a")) == 400 - done
            health = admin.get_system_health()["queue_stats"]["a"]
            assert health["paused"] == ["high", "normal", "low"]
            assert next(q for q in admin.list_queues() if q["name"] == "a")["paused"] == [
                "high",
                "normal",
                "low",
            ]
        finally:
            await worker.stop()

    asyncio.run(main())


def test_a_burst_worker_does_not_wait_for_a_paused_queue(config: QueueConfig) -> None:
    enqueue(config, "a", 2)
    enqueue(config, "b", 2)
    QueueAdmin(config).pause("a")
    run_burst(config, max_workers=2)
    # (two run at once, so they may finish in either order)
    assert sorted(ran("b")) == [0, 1] and ran("a") == []
    assert config.redis_client.llen(config.get_queue_key("a")) == 2


ACTIVE: dict[str, int] = {"now": 0, "max": 0}


async def counted(data: dict) -> None:
    ACTIVE["now"] += 1
    ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
    await asyncio.sleep(0.02)
    ACTIVE["now"] -= 1
    RUNS.append((data["q"], data["n"]))


def test_max_concurrency_holds_a_wide_worker_to_the_cap(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config(limits={"a": QueueLimits(max_concurrency=3)})
    ACTIVE.update(now=0, max=0)
    enqueue(config, "a", 30, counted)
    run_burst(config, max_workers=10)
    assert sorted(ran("a")) == list(range(30))
    assert ACTIVE["max"] == 3


def test_held_back_items_keep_their_order_and_attempts(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config(limits={"a": QueueLimits(rate_limit="20/s")})
    ids = enqueue(config, "a", 45)
    started = time.monotonic()
    run_burst(config, max_workers=1)
    assert ran("a") == list(range(45))  # FIFO, held back at the head
    assert time.monotonic() - started >= 2.0  # 45 claims at 20/s need two full windows
    manager = QueueManager(config)
    for op_id in ids:
        record_ = manager.get_operation(op_id)
        assert record_ is not None
        assert (record_["status"], record_["attempts"]) == ("completed", 0)  # none consumed


def test_rate_limit_holds_in_every_window_while_another_queue_drains(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # Given a rate-limited queue first in claim order, and an unlimited one after it
    config = make_config(limits={"alpha": QueueLimits(rate_limit="50/s")})
    limited = enqueue(config, "alpha", 130)
    enqueue(config, "beta", 1000)
    started = time.monotonic()
    finished: dict[str, float] = {}

    async def main() -> None:
        worker = QueueWorker(config, max_workers=10, burst=True, wait_scheduled=True)

        async def watch() -> None:
            await async_wait_until(lambda: len(ran("beta")) == 1000, timeout=30)
            finished["beta"] = time.monotonic() - started

        await asyncio.gather(asyncio.wait_for(worker.run(), 30), watch())

    asyncio.run(main())
    finished["alpha"] = time.monotonic() - started
    # Then: the claims of alpha (server times, ms) never exceed 50 in any one-second window
    claims = sorted(
        float(raw_redis.hget(config.keys.operation(op), "started_at")) for op in limited
    )
    assert len(claims) == 130
    for i in range(len(claims) - 50):
        assert claims[i + 50] - claims[i] >= 1.0, (i, claims[i], claims[i + 50])
    assert finished["alpha"] >= 2.0  # 130 at 50/s: at least two full windows
    # and the unlimited queue was not slowed down to alpha's pace
    assert finished["beta"] < 0.7 * finished["alpha"], finished


def claim_calls(raw_redis: redis.Redis, config: QueueConfig) -> int:
    """claim.lua calls of this test's namespace, counted from the SLOWLOG (see the fixture)."""
    import hashlib

    from queue_system.engine.scripts import script_source

    sha = hashlib.sha1(script_source("claim").encode()).hexdigest().encode()
    inflight = config.keys.inflight.encode()
    return sum(
        1
        for entry in raw_redis.execute_command("SLOWLOG", "GET", 100_000)
        if [bytes(a) for a in entry[3][:4]][1:4:2] == [sha, inflight]
    )


@pytest.fixture
def slowlog_everything(raw_redis: redis.Redis) -> Any:
    saved = {
        name: raw_redis.config_get(name)[name]
        for name in ("slowlog-log-slower-than", "slowlog-max-len")
    }
    raw_redis.config_set("slowlog-log-slower-than", 0)
    raw_redis.config_set("slowlog-max-len", 100_000)
    raw_redis.slowlog_reset()
    yield
    for name, value in saved.items():
        raw_redis.config_set(name, value)


def test_workers_held_by_a_full_cap_poll_briefly_without_spinning(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis, slowlog_everything: Any
) -> None:
    # Given 10 items of 20 ms under max_concurrency=1 and two (non-burst) workers: whenever
    # the cap is full, nothing signals when the slot frees
    config = make_config(limits={"a": QueueLimits(max_concurrency=1)})
    enqueue(config, "a", 10, slow, sleep=0.02)

    async def main() -> float:
        workers = [QueueWorker(config, max_workers=2, queues=["a"]) for _ in range(2)]
        started = time.monotonic()
        for worker in workers:
            await worker.start()
        try:
            await async_wait_until(lambda: len(ran("a")) == 10, timeout=20, message="drained")
            return time.monotonic() - started
        finally:
            for worker in workers:
                await worker.stop()

    elapsed = asyncio.run(main())
    # Then they re-check soon (not after the 1 s idle wait: 10 items would take ~10 s)...
    assert elapsed < 3.0, elapsed
    # ...but not in a hot loop: about one claim per LIMIT_POLL_S (50 ms) per worker
    calls = claim_calls(raw_redis, config)
    assert calls <= 2 * (elapsed / 0.05) * 2 + 20, (calls, elapsed)
