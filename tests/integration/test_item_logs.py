"""Every log record about an item names its operation id (what an operator greps for)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from tests.support.burst import run_burst


def test_a_system_error_names_the_operation_not_the_lease(
    make_config: Callable[..., QueueConfig], caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(unknown_processor_ttl=0)
    op_id = QueueManager(config).enqueue({"n": 1}, "legacy.tasks:gone")["operation_id"]
    with caplog.at_level(logging.ERROR, logger="queue_system.worker"):
        run_burst(config)
    [record] = [r for r in caplog.records if "system error" in r.getMessage()]
    assert op_id in record.getMessage()
    assert record.operation_id == op_id  # type: ignore[attr-defined]


def succeed(entity: dict[str, int]) -> int:
    return entity["n"]


def fail(entity: dict[str, int]) -> None:
    raise RuntimeError("boom")


def test_each_run_has_debug_lines_with_its_operation_id(
    config: QueueConfig, manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    ok = manager.enqueue({"n": 1}, succeed)["operation_id"]
    bad = manager.enqueue({"n": 2}, fail, retry_config=QueueRetryConfig(max_attempts=0))
    with caplog.at_level(logging.DEBUG, logger="queue_system.worker"):
        run_burst(config)
    by_id: dict[str, list[str]] = {}
    for record in caplog.records:
        op_id = getattr(record, "operation_id", None)
        if op_id is not None and record.levelno == logging.DEBUG:
            by_id.setdefault(op_id, []).append(record.getMessage())
    assert by_id[ok][0].split(" ", 2)[2].startswith("started")
    assert any("succeeded in" in m for m in by_id[ok])
    assert any("raised RuntimeError" in m for m in by_id[bad["operation_id"]])
    finished = [r for r in caplog.records if "succeeded in" in r.getMessage()]
    assert all(isinstance(getattr(r, "duration_ms", None), int) for r in finished)


def test_retry_and_dead_letter_lines_carry_the_operation_id_field(
    config: QueueConfig, manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    # A JSON log shipper indexes the field: grep by id must find every line, not just some
    op_id = manager.enqueue(
        {"n": 1}, fail, retry_config=QueueRetryConfig.fixed(0.01, max_attempts=1)
    )["operation_id"]
    with caplog.at_level(logging.INFO, logger="queue_system"):
        run_burst(config)
    about_it = [r for r in caplog.records if op_id in r.getMessage()]
    assert len(about_it) >= 2  # the retry line and the dead-letter line
    assert [r.getMessage() for r in about_it if getattr(r, "operation_id", None) != op_id] == []
