"""What a producer's failure log record says about the call: never the entity or a password.

The public methods of QueueManager and AsyncQueueManager are wrapped in
``try_catch(context=...)`` (the reference's ``@try_catch``): a failure is logged with the
method, queue, priority and operation id(s), then re-raised unchanged. Each function here
takes the method's own arguments (``self`` first) and runs only when the call failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from queue_system.config import QueueConfig
from queue_system.producer.plan import default_queue_name

CALLER_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError)
"""Bad arguments (``SerializationError`` is a ValueError), raised before anything is sent:
logged as one WARNING line, since the caller's own traceback shows where; any other failure
is an ERROR with its traceback."""

LOGGED_OPERATION_IDS = 10
"""Caller-chosen operation ids of a failed batch named in its record at most."""


class Producer(Protocol):
    """QueueManager or AsyncQueueManager."""

    config: QueueConfig


def enqueue_context(
    manager: Producer,
    entity: Any = None,
    processor: Any = None,
    queue_name: str | None = None,
    priority: str = "normal",
    operation_id: str | None = None,
    *_: Any,
    **__: Any,
) -> dict[str, Any]:
    """``enqueue``: its queue, priority and caller-chosen operation id (None: random)."""
    return {
        "queue": _queue(manager.config, processor, queue_name),
        "priority": priority,
        "operation_id": operation_id,
    }


def enqueue_batch_context(
    manager: Producer, entities: Any = None, processor: Any = None, **options: Any
) -> dict[str, Any]:
    """``enqueue_batch``: queue, priority, how many entities, the first caller-chosen ids."""
    ids = options.get("operation_ids")
    return {
        "queue": _queue(manager.config, processor, options.get("queue_name")),
        "priority": options.get("priority", "normal"),
        "batch_size": len(entities) if isinstance(entities, Sequence) else None,
        "operation_ids": list(ids)[:LOGGED_OPERATION_IDS] if isinstance(ids, Sequence) else None,
    }


def operation_context(manager: Producer, operation_id: Any = None) -> dict[str, Any]:
    """``get_operation``: the operation id asked for."""
    return {"operation_id": operation_id}


def wait_context(
    manager: Producer, operation_id: Any = None, timeout: Any = None
) -> dict[str, Any]:
    """``wait_for``: the operation id waited for."""
    return {"operation_id": operation_id}


def purge_context(
    manager: Producer, queue_name: Any = None, priority: Any = "normal"
) -> dict[str, Any]:
    """``purge_queue``: the queue and priority being purged."""
    return {"queue": queue_name, "priority": priority}


def _queue(config: QueueConfig, processor: Any, queue_name: str | None) -> str | None:
    """The queue an enqueue was for: as given, else its processor's (None if unknowable)."""
    if queue_name is not None:
        return queue_name
    try:
        # The failed call resolved this name already (or failed doing so): no new registration.
        return default_queue_name(config.registry.name_for(processor))
    except Exception:
        return None
