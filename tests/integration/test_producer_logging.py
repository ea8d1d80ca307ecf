"""The producers' public methods log a failure with its context, as the reference's
``@try_catch`` does, and re-raise the very same exception. The record names the method, the
queue and the operation id; it never carries the entity or a password."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from queue_system import AsyncQueueManager, QueueConfig, QueueManager, QueueUnavailableError

SECRET_ENTITY = {"card": "4111-secret-entity-1111"}
PASSWORD = "s3cret-pw"


def process_data(data: dict) -> None:
    """A processor; never run here."""


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def everything_logged(record: logging.LogRecord) -> str:
    """The record as any handler could render it: message, fields and traceback."""
    formatter = logging.Formatter()
    text = formatter.format(record)
    return text + repr(vars(record))


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL (with a password) where nothing listens: every call is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield f"redis://user:{PASSWORD}@127.0.0.1:{port}/0"


@pytest.fixture
def dead_config(dead_url: str) -> Iterator[QueueConfig]:
    config = QueueConfig(redis_url=dead_url, connection_timeout=0.5, max_connection_retries=0)
    yield config
    config.redis_client.close()


def test_a_failed_enqueue_is_logged_with_its_context_and_reraised_unchanged(
    dead_config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    manager = QueueManager(dead_config)
    with pytest.raises(QueueUnavailableError) as raised:
        manager.enqueue(
            SECRET_ENTITY, process_data, queue_name="emails", priority="high", operation_id="op-1"
        )
    [record] = error_records(caplog)
    assert record.name == "queue_system.producer.sync"
    assert record.function == "QueueManager.enqueue"  # type: ignore[attr-defined]
    assert record.queue == "emails"  # type: ignore[attr-defined]
    assert record.priority == "high"  # type: ignore[attr-defined]
    assert record.operation_id == "op-1"  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[1] is raised.value
    assert "queue=emails" in record.getMessage() and "operation_id=op-1" in record.getMessage()
    logged = everything_logged(record)
    assert SECRET_ENTITY["card"] not in logged
    assert PASSWORD not in logged


def test_the_queue_of_a_default_named_enqueue_is_the_processors_name(
    dead_config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(QueueUnavailableError):
        QueueManager(dead_config).enqueue(SECRET_ENTITY, process_data)
    [record] = error_records(caplog)
    assert record.queue == "process_data"  # type: ignore[attr-defined]
    assert record.operation_id is None  # type: ignore[attr-defined]


def test_bad_input_is_one_warning_line_with_context_and_reraised_unchanged(
    config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # The caller's own mistake: its traceback is the caller's, so the record is one line
    with pytest.raises(TypeError, match="entity must be a dict") as raised:
        QueueManager(config).enqueue("hello", process_data, operation_id="op-2")  # type: ignore[arg-type]
    assert error_records(caplog) == []
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.function == "QueueManager.enqueue"  # type: ignore[attr-defined]
    assert record.exception_type == "TypeError"  # type: ignore[attr-defined]
    assert record.operation_id == "op-2"  # type: ignore[attr-defined]
    assert record.exc_info is None
    assert str(raised.value) in record.getMessage()


def test_a_failed_batch_names_its_queue_size_and_given_ids_but_no_entity(
    dead_config: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(QueueUnavailableError):
        QueueManager(dead_config).enqueue_batch(
            [SECRET_ENTITY] * 3, process_data, queue_name="bulk", operation_ids=["a", None, "c"]
        )
    [record] = error_records(caplog)
    assert record.function == "QueueManager.enqueue_batch"  # type: ignore[attr-defined]
    assert record.queue == "bulk"  # type: ignore[attr-defined]
    assert record.batch_size == 3  # type: ignore[attr-defined]
    assert record.operation_ids == ["a", None, "c"]  # type: ignore[attr-defined]
    assert SECRET_ENTITY["card"] not in everything_logged(record)


SYNC_READS: list[tuple[str, Callable[[QueueManager], Any], dict[str, Any]]] = [
    ("get_queue_status", lambda m: m.get_queue_status(), {}),
    ("get_workers", lambda m: m.get_workers(), {}),
    ("get_operation", lambda m: m.get_operation("op-9"), {"operation_id": "op-9"}),
    ("cancel", lambda m: m.cancel("op-9"), {"operation_id": "op-9"}),
    ("wait_for", lambda m: m.wait_for("op-9", timeout=1), {"operation_id": "op-9"}),
    (
        "purge_queue",
        lambda m: m.purge_queue("emails", "low"),
        {"queue": "emails", "priority": "low"},
    ),
]


@pytest.mark.parametrize(("method", "call", "fields"), SYNC_READS, ids=[c[0] for c in SYNC_READS])
def test_every_public_method_logs_its_failure(
    dead_config: QueueConfig,
    caplog: pytest.LogCaptureFixture,
    method: str,
    call: Callable[[QueueManager], Any],
    fields: dict[str, Any],
) -> None:
    with pytest.raises(QueueUnavailableError):
        call(QueueManager(dead_config))
    [record] = error_records(caplog)
    assert record.function == f"QueueManager.{method}"  # type: ignore[attr-defined]
    assert {name: getattr(record, name) for name in fields} == fields
    assert PASSWORD not in everything_logged(record)


ASYNC_CALLS: list[tuple[str, Callable[[AsyncQueueManager], Awaitable[Any]]]] = [
    ("enqueue", lambda m: m.enqueue(SECRET_ENTITY, process_data, operation_id="op-3")),
    ("enqueue_batch", lambda m: m.enqueue_batch([SECRET_ENTITY], process_data)),
    ("get_queue_status", lambda m: m.get_queue_status()),
    ("get_workers", lambda m: m.get_workers()),
    ("get_operation", lambda m: m.get_operation("op-3")),
    ("purge_queue", lambda m: m.purge_queue("emails")),
    ("cancel", lambda m: m.cancel("op-3")),
    ("wait_for", lambda m: m.wait_for("op-3", timeout=1)),
]


@pytest.mark.parametrize(("method", "call"), ASYNC_CALLS, ids=[c[0] for c in ASYNC_CALLS])
def test_the_async_manager_logs_the_same_way(
    dead_config: QueueConfig,
    caplog: pytest.LogCaptureFixture,
    method: str,
    call: Callable[[AsyncQueueManager], Awaitable[Any]],
) -> None:
    async def main() -> None:
        manager = AsyncQueueManager(dead_config)
        try:
            with pytest.raises(QueueUnavailableError):
                await call(manager)
        finally:
            await manager.aclose()

    asyncio.run(main())
    [record] = error_records(caplog)
    assert record.name == "queue_system.producer.aio"
    assert record.function == f"AsyncQueueManager.{method}"  # type: ignore[attr-defined]
    logged = everything_logged(record)
    assert SECRET_ENTITY["card"] not in logged and PASSWORD not in logged
    if method == "enqueue":
        assert record.operation_id == "op-3"  # type: ignore[attr-defined]


def test_a_successful_call_logs_nothing(
    manager: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    manager.enqueue({"a": 1}, process_data)
    manager.get_queue_status()
    assert error_records(caplog) == []
