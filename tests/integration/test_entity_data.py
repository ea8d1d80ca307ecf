"""Data kept as given, or refused: what enqueue accepts as an entity and as a queue name.

An entity is a JSON object (a dict, as the reference types it); anything else is a TypeError
naming the argument, and bad data or names raise before anything is written, in the sync and
the async producer, one by one and in batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid
from collections.abc import Callable
from typing import Any

import pydantic
import pytest
import redis

from queue_system import AsyncQueueManager, QueueConfig, QueueManager, SerializationError
from queue_system.core.checks import RESERVED_QUEUE_NAMES
from tests.support.burst import run_burst

SEEN: list[Any] = []


def process_data(data: dict) -> None:
    SEEN.append(data)


def metrics(data: dict) -> None:
    """A processor whose default queue name (its own name) is reserved."""


@dataclasses.dataclass
class Signup:
    email: str
    at: dt.datetime


class Invoice(pydantic.BaseModel):
    id: uuid.UUID
    total: decimal.Decimal


AT = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
NOT_OBJECTS = ["hello", None, [{"a": 1}], {"a", "b"}, 42, b"{}"]


def keys_of(raw_redis: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(raw_redis.scan_iter(match=f"{prefix}*"))


def run(coro_factory: Callable[[AsyncQueueManager], Any], config: QueueConfig) -> Any:
    async def main() -> Any:
        manager = AsyncQueueManager(config)
        try:
            return await coro_factory(manager)
        finally:
            await manager.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("entity", NOT_OBJECTS, ids=lambda e: type(e).__name__)
def test_an_entity_that_is_not_a_dict_is_a_type_error_and_writes_nothing(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str, entity: object
) -> None:
    with pytest.raises(TypeError, match=rf"^entity must be a dict.*{type(entity).__name__}"):
        manager.enqueue(entity, process_data)  # type: ignore[arg-type]
    assert keys_of(raw_redis, key_prefix) == []


@pytest.mark.parametrize("entity", NOT_OBJECTS, ids=lambda e: type(e).__name__)
def test_a_batch_with_one_entity_not_a_dict_names_it_and_writes_nothing(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str, entity: object
) -> None:
    with pytest.raises(TypeError, match=r"^entities\[1\] must be a dict"):
        manager.enqueue_batch([{"ok": 1}, entity, {"ok": 2}], process_data)
    assert keys_of(raw_redis, key_prefix) == []


def test_the_async_producer_refuses_the_same_entities(
    config: QueueConfig, raw_redis: redis.Redis, key_prefix: str
) -> None:
    async def calls(manager: AsyncQueueManager) -> list[str]:
        errors = []
        for entity in NOT_OBJECTS:
            with pytest.raises(TypeError) as one:
                await manager.enqueue(entity, process_data)  # type: ignore[arg-type]
            with pytest.raises(TypeError) as batch:
                await manager.enqueue_batch([{"ok": 1}, entity], process_data)
            errors += [str(one.value), str(batch.value)]
        return errors

    errors = run(calls, config)
    assert all(
        e.startswith(("entity must be a dict", "entities[1] must be a dict")) for e in errors
    )
    assert keys_of(raw_redis, key_prefix) == []


@pytest.mark.parametrize("dedup", [None, True])
def test_a_naive_datetime_is_refused_and_writes_nothing(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str, dedup: bool | None
) -> None:
    with pytest.raises(SerializationError, match="naive datetime"):
        manager.enqueue({"at": dt.datetime(2026, 5, 1)}, process_data, deduplication_key=dedup)
    assert keys_of(raw_redis, key_prefix) == []


def test_a_set_is_refused_rather_than_stored_as_a_list(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(SerializationError, match="set"):
        manager.enqueue({"tags": {"a", "b"}}, process_data)
    assert keys_of(raw_redis, key_prefix) == []


def test_dataclass_and_pydantic_entities_reach_the_processor_as_their_json_objects(
    config: QueueConfig,
) -> None:
    SEEN.clear()
    manager = QueueManager(config)
    invoice = Invoice(id=uuid.UUID(int=7), total=decimal.Decimal("10.50"))
    manager.enqueue(Signup(email="a@example.com", at=AT), process_data)  # type: ignore[arg-type]
    manager.enqueue({"invoice": invoice, "at": AT}, process_data)
    manager.enqueue(invoice, process_data)  # type: ignore[arg-type]
    run_burst(config, max_workers=1)  # one at a time: SEEN keeps the queue's order
    received = list(SEEN)
    assert received == [
        {"email": "a@example.com", "at": "2026-05-01T12:00:00+00:00"},
        {
            "invoice": {"id": str(uuid.UUID(int=7)), "total": "10.50"},
            "at": "2026-05-01T12:00:00+00:00",
        },
        {"id": str(uuid.UUID(int=7)), "total": "10.50"},
    ]


def test_an_empty_queue_name_is_a_value_error_not_the_default(
    manager: QueueManager, config: QueueConfig, raw_redis: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(ValueError, match="queue_name"):
        manager.enqueue({"a": 1}, process_data, queue_name="")
    with pytest.raises(ValueError, match="queue_name"):
        manager.enqueue_batch([{"a": 1}], process_data, queue_name="")
    with pytest.raises(ValueError, match="queue_name"):
        run(lambda m: m.enqueue({"a": 1}, process_data, queue_name=""), config)
    assert keys_of(raw_redis, key_prefix) == []


@pytest.mark.parametrize("name", sorted(RESERVED_QUEUE_NAMES))
def test_reserved_queue_names_are_refused_naming_them(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str, name: str
) -> None:
    with pytest.raises(ValueError, match=rf"queue_name '{name}' is reserved.*inflight"):
        manager.enqueue({"a": 1}, process_data, queue_name=name)
    assert keys_of(raw_redis, key_prefix) == []


def test_the_reference_reserved_names_are_among_them() -> None:
    fixed_key_names = (
        "registry failures system_errors inflight leases delayed redeliveries notify metrics "
        "workers dedup op worker"
    )
    assert set(fixed_key_names.split()) <= RESERVED_QUEUE_NAMES


def test_a_processor_whose_default_queue_name_is_reserved_needs_a_queue_name(
    manager: QueueManager, config: QueueConfig, key_prefix: str, raw_redis: redis.Redis
) -> None:
    with pytest.raises(ValueError, match="queue_name 'metrics' is reserved"):
        manager.enqueue({"a": 1}, metrics)
    with pytest.raises(ValueError, match="queue_name 'metrics' is reserved"):
        run(lambda m: m.enqueue_batch([{"a": 1}], metrics), config)
    assert keys_of(raw_redis, key_prefix) == []
    assert manager.enqueue({"a": 1}, metrics, queue_name="app_metrics")["status"] == "queued"


def test_a_reserved_name_registered_by_an_older_release_can_still_be_read_and_purged(
    manager: QueueManager, raw_redis: redis.Redis, key_prefix: str
) -> None:
    # Given a queue named "failures" that an older release let a producer create
    raw_redis.sadd(f"{key_prefix}registry", "failures")
    raw_redis.lpush(f"{key_prefix}normal:failures", json.dumps({"junk": 1}))
    # Then its items stay visible and can be removed
    assert manager.get_queue_status()[f"{key_prefix}normal:failures"] == 1
    assert manager.purge_queue("failures") == 1


class Plan(enum.Enum):
    PRO = "pro"


RICH = {"signup": Signup(email="a@example.com", at=AT), "id": uuid.UUID(int=7)}
RICH |= {"total": decimal.Decimal("10.50"), "plan": Plan.PRO}
RICH_AS_JSON = {
    "signup": {"email": "a@example.com", "at": "2026-05-01T12:00:00+00:00"},
    "id": str(uuid.UUID(int=7)),
    "total": "10.50",
    "plan": "pro",
}
# The other ways in: a delayed item, one at a given time, one waiting for a dependency
PATHS: dict[str, Callable[[QueueManager], dict[str, Any]]] = {
    "delay": lambda m: {"delay": 0.01},
    "run_at": lambda m: {"run_at": dt.datetime.now(dt.timezone.utc)},
    "depends_on": lambda m: {
        "depends_on": [m.enqueue({"first": True}, process_data)["operation_id"]]
    },
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_delayed_and_dependent_items_keep_the_data_as_given_or_refuse_it(
    config: QueueConfig, raw_redis: redis.Redis, key_prefix: str, path: str
) -> None:
    manager = QueueManager(config)
    options = PATHS[path](manager)
    before = keys_of(raw_redis, key_prefix)
    for bad in ({"at": dt.datetime(2026, 5, 1)}, {"tags": {"a"}}, "hello", None):
        with pytest.raises((TypeError, SerializationError)):
            manager.enqueue(bad, process_data, **options)  # type: ignore[arg-type]
    assert keys_of(raw_redis, key_prefix) == before  # nothing written

    SEEN.clear()
    manager.enqueue(RICH, process_data, **options)
    manager.enqueue(
        Invoice(id=uuid.UUID(int=7), total=decimal.Decimal("1")), process_data, **options
    )  # type: ignore[arg-type]
    run_burst(config, max_workers=1)
    assert RICH_AS_JSON in SEEN and {"id": str(uuid.UUID(int=7)), "total": "1"} in SEEN


def test_a_cron_entity_is_kept_as_given_or_refused(make_config: Callable[..., QueueConfig]) -> None:
    config = make_config()
    for bad in ({"at": dt.datetime(2026, 5, 1)}, {"tags": {"a"}}, "hello", Plan.PRO):
        with pytest.raises((TypeError, SerializationError)):
            config.cron(every=60, processor=process_data, entity=bad, name=f"bad-{id(bad)}")
    spec = config.cron(every=60, processor=process_data, entity=RICH)
    assert spec.entity == RICH_AS_JSON
