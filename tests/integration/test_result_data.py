"""A processor's result kept in its status record follows the entities' table: converted
without loss, or refused (kept as ``{"unserializable", "error"}``), never changed silently."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from queue_system import QueueConfig, QueueManager
from tests.support.burst import run_burst

AT = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


@dataclasses.dataclass
class Sent:
    to: str
    at: dt.datetime


def tags(data: dict[str, Any]) -> dict[str, Any]:
    return {"tags": {"a", "b"}}


def naive_time(data: dict[str, Any]) -> dict[str, Any]:
    return {"at": dt.datetime(2026, 5, 1, 12, 0)}


def sent(data: dict[str, Any]) -> Sent:
    return Sent(to="a@example.com", at=AT)


def result_of(config: QueueConfig, processor: Any) -> Any:
    manager = QueueManager(config)
    op_id = manager.enqueue({}, processor)["operation_id"]
    run_burst(config)
    info = manager.get_operation(op_id)
    assert info is not None and info["status"] == "completed"
    return info["result"]


def test_a_result_holding_a_set_is_kept_as_unserializable_not_as_a_list(
    config: QueueConfig,
) -> None:
    result = result_of(config, tags)
    assert result["unserializable"] == "dict"
    assert "set" in result["error"]


def test_a_result_holding_a_naive_datetime_is_kept_as_unserializable(config: QueueConfig) -> None:
    result = result_of(config, naive_time)
    assert result["unserializable"] == "dict"
    assert "naive datetime" in result["error"]


def test_a_dataclass_result_is_kept_as_its_object(config: QueueConfig) -> None:
    assert result_of(config, sent) == {"to": "a@example.com", "at": "2026-05-01T12:00:00+00:00"}
