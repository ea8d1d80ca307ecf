"""Items that cannot be run end in system_errors with their reason and raw bytes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from queue_system.core.records import decode_raw
from tests.support.burst import run_burst

RAN: list[object] = []


@pytest.fixture
def config(make_config: Callable[..., QueueConfig]) -> QueueConfig:
    """Unknown processors go to system_errors at once here (no wait for a deploy)."""
    return make_config(unknown_processor_ttl=0)


def harmless(data: object) -> None:
    RAN.append(data)


def valid_envelope(**overrides: object) -> bytes:
    env = {
        "v": 1, "id": "op-junk", "queue": "jobs", "priority": "normal",
        "processor": f"{__name__}:harmless", "entity": {"x": 1},
        "retry": {"max_attempts": 0, "delays": [], "timeout": None, "jitter": 0},
        "attempts": 0, "first_at": 1.0, "enqueued_at": 1.0, "history": [],
    }  # fmt: skip
    env.update(overrides)
    return json.dumps(env).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe\x80 not utf-8", "undecodable"),
        (b'{"v": 1, "id": "trunc', "undecodable"),
        (b"42", "undecodable"),
        (valid_envelope(processor="os:system", entity="rm -rf /"), "unknown_processor"),
        (valid_envelope(processor="builtins:eval"), "unknown_processor"),
        (valid_envelope(on_success="os:system"), "unknown_processor"),
        (valid_envelope(retry={"max_attempts": -3}), "invalid_options"),
        (valid_envelope(timeout=-1), "invalid_options"),
    ],
)
def test_junk_pushed_into_a_list_ends_in_system_errors_with_raw_bytes(
    config: QueueConfig, raw_redis: redis.Redis, raw: bytes, reason: str
) -> None:
    RAN.clear()
    config.register_callback(harmless)
    raw_redis.sadd(config.keys.registry, "jobs")
    raw_redis.lpush(config.keys.queue("jobs"), raw)
    run_burst(config)
    [stored] = raw_redis.lrange(config.keys.system_errors, 0, -1)
    record = json.loads(stored)
    assert record["reason"] == reason
    assert decode_raw(record["raw"]) == raw
    assert record["message"]
    assert RAN == []
    assert raw_redis.hlen(config.keys.inflight) == 0
    assert config.get_metrics()["system_errors"] == 1


def test_unknown_processor_name_from_a_producer(
    config: QueueConfig, manager: QueueManager, raw_redis: redis.Redis
) -> None:
    op = manager.enqueue({"a": 1}, "billing:charge_card", queue_name="billing")
    run_burst(config)
    [stored] = raw_redis.lrange(config.keys.system_errors, 0, -1)
    record = json.loads(stored)
    assert record["operation_id"] == op["operation_id"]
    assert record["reason"] == "unknown_processor"
    assert "billing:charge_card" in record["message"]
    assert record["envelope"]["entity"] == {"a": 1}


def test_allowed_module_prefix_lets_a_worker_import_by_name(
    make_config: object, raw_redis: redis.Redis
) -> None:
    RAN.clear()
    config = make_config(allowed_modules=["tests.integration"])  # type: ignore[operator]
    QueueManager(config).enqueue({"n": 1}, f"{__name__}:harmless", queue_name="jobs")
    run_burst(config)
    assert RAN == [{"n": 1}]
    assert raw_redis.llen(config.keys.system_errors) == 0
