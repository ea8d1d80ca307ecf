"""Where features landing in parallel plug into the dashboard. Each function answers "not
available" today; the page hides what it cannot show. Fill one in when its feature lands.
"""

from __future__ import annotations

from typing import Any

from queue_system.config import QueueConfig


def paused_queues(config: QueueConfig) -> set[str] | None:
    """Names of paused queues, or None while pausing does not exist (the limits feature)."""
    return None


def can_cancel(config: QueueConfig) -> bool:
    """True once operations can be cancelled (the cancel feature): shows the Cancel button."""
    return False


def cancel_operation(config: QueueConfig, operation_id: str) -> bool:
    """Cancel ``operation_id``; True when it was cancelled (the cancel feature). Its admin
    call should write the audit record, as requeue and purge do."""
    raise NotImplementedError("cancelling operations is not available in this version")


def progress(operation: dict[str, Any]) -> float | None:
    """The reported progress (0-1) of an operation, or None (the progress feature)."""
    return None
