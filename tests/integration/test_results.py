"""What an operation's status record keeps of a result: capped in size, or nothing at all.

``max_result_bytes`` caps the stored result (over it: ``{"truncated": true, "size": N}``, N in
UTF-8 bytes); ``keep_results`` / ``queue_keep_results`` switch storing off. ``on_success``
always receives the whole result: the cap only bounds what Redis keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueConfig, QueueManager
from tests.support.burst import run_burst

SEEN: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    SEEN.clear()
    yield


def echo(data: dict[str, Any]) -> Any:
    return data["value"]


def send(data: dict[str, Any]) -> dict[str, Any]:
    return {"sent": data["to"]}


def lone_surrogate(data: dict[str, Any]) -> str:
    return chr(0xD800)


def keep(data: dict[str, Any]) -> None:
    SEEN.append(data["result"])


def result_of(manager: QueueManager, op_id: str) -> Any:
    operation = manager.get_operation(op_id)
    assert operation is not None and operation["status"] == "completed", operation
    return operation["result"]


def test_result_over_the_cap_is_stored_as_a_size_marker(
    make_config: Callable[..., QueueConfig],
) -> None:
    config = make_config(max_result_bytes=100)
    manager = QueueManager(config)
    small = manager.enqueue({"value": "x" * 90}, echo)["operation_id"]
    large = manager.enqueue({"value": "x" * 200}, echo, on_success=keep)["operation_id"]
    # 60 characters but 120 UTF-8 bytes (+2 quotes): the cap counts bytes
    wide = manager.enqueue({"value": "é" * 60}, echo)["operation_id"]
    run_burst(config)
    assert result_of(manager, small) == "x" * 90
    assert result_of(manager, large) == {"truncated": True, "size": 202}
    assert result_of(manager, wide) == {"truncated": True, "size": 122}
    assert SEEN == ["x" * 200]  # the callback still gets the whole result


def test_default_cap_is_64_kib(config: QueueConfig, manager: QueueManager) -> None:
    under = manager.enqueue({"value": "y" * (64 * 1024 - 2)}, echo)["operation_id"]
    over = manager.enqueue({"value": "y" * (64 * 1024 - 1)}, echo)["operation_id"]
    run_burst(config)
    assert result_of(manager, under) == "y" * (64 * 1024 - 2)
    assert result_of(manager, over) == {"truncated": True, "size": 64 * 1024 + 1}


def test_keep_results_false_stores_no_result(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config(keep_results=False)
    manager = QueueManager(config)
    op_id = manager.enqueue({"value": {"secret": 1}}, echo, on_success=keep)["operation_id"]
    run_burst(config)
    assert result_of(manager, op_id) is None
    assert b"secret" not in b"".join(raw_redis.hvals(config.keys.operation(op_id)))
    assert SEEN == [{"secret": 1}]


def test_results_switched_off_for_one_queue(make_config: Callable[..., QueueConfig]) -> None:
    config = make_config(queue_keep_results={"emails": False})
    manager = QueueManager(config)
    email = manager.enqueue({"to": "a@example.com"}, send, queue_name="emails")["operation_id"]
    other = manager.enqueue({"to": "b@example.com"}, send, queue_name="letters")["operation_id"]
    run_burst(config)
    assert result_of(manager, email) is None
    assert result_of(manager, other) == {"sent": "b@example.com"}


def test_result_that_is_not_utf8_encodable_is_recorded_not_fatal(
    config: QueueConfig, manager: QueueManager
) -> None:
    # A lone surrogate passes json.dumps(ensure_ascii=False) but cannot be sent to Redis
    op_id = manager.enqueue({}, lone_surrogate)["operation_id"]
    run_burst(config)
    assert result_of(manager, op_id)["unserializable"] == "str"
