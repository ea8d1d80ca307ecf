"""Which dead letters an admin operation applies to: the filter every QueueAdmin method takes.

Pure (no Redis I/O): :class:`DeadLetterFilter` decides which records an operation applies to;
reading and building the records themselves is :mod:`queue_system.core.records`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

Since = float | int | dt.datetime | None


class Filters(TypedDict, total=False):
    """The filter keywords of every dead-letter method."""

    queue: str | None
    processor: str | None
    error_type: str | None
    since: Since
    until: Since


@dataclass(frozen=True, kw_only=True)
class DeadLetterFilter:
    """Which records an operation applies to; every given criterion must hold.

    ``processor`` matches the stored name (``"app.tasks:send_email"``) or its last part
    (``"send_email"``); ``error_type`` matches the exception type name or the ``reason``
    (``"unknown_processor"``); ``since``/``until`` bound ``at`` (epoch seconds, inclusive).
    """

    queue: str | None = None
    processor: str | None = None
    error_type: str | None = None
    since: float | None = None
    until: float | None = None
    operation_ids: frozenset[str] | None = None

    @classmethod
    def build(
        cls, operation_ids: frozenset[str] | None = None, **filters: Unpack[Filters]
    ) -> DeadLetterFilter:
        """A filter from keywords; ``since``/``until`` as epoch seconds or datetimes."""
        since, until = filters.get("since"), filters.get("until")
        return cls(
            queue=filters.get("queue"),
            processor=filters.get("processor"),
            error_type=filters.get("error_type"),
            since=to_epoch(since, "since"),
            until=to_epoch(until, "until"),
            operation_ids=operation_ids,
        )

    def matches(self, record: dict[str, Any] | None) -> bool:
        """True if ``record`` (None: unreadable) meets every criterion."""
        if record is None:
            return self == DeadLetterFilter()
        processor, at = record.get("processor") or "", record.get("at")
        at = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None
        short = processor.rpartition(":")[2].rpartition(".")[2]
        return (
            (self.queue is None or record.get("queue") == self.queue)
            and (self.processor is None or self.processor in (processor, short))
            and (self.error_type in (None, record.get("error_type"), record.get("reason")))
            and (self.since is None or (at is not None and at >= self.since))
            and (self.until is None or (at is not None and at <= self.until))
            and (self.operation_ids is None or record.get("operation_id") in self.operation_ids)
        )

    def could_match(self, raw: bytes) -> bool:
        """A cheap necessary condition on the raw bytes (skips parsing most non-matches)."""
        if self.queue is not None and f'"{self.queue}"'.encode() not in raw:
            return False
        return self.operation_ids is None or any(
            f'"{op_id}"'.encode() in raw for op_id in self.operation_ids
        )


def to_epoch(value: Since, name: str) -> float | None:
    """Epoch seconds from a number or a datetime (a naive datetime is taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return aware.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be epoch seconds or a datetime, got {value!r}")
    return float(value)


def selected_ids(operation_ids: Iterable[str] | None, all_records: bool) -> frozenset[str] | None:
    """The ids asked for (None: every record); ValueError if neither ids nor ``all``."""
    if isinstance(operation_ids, str):
        raise TypeError("operation_ids must be a list of ids, not a str")
    ids = frozenset(operation_ids) if operation_ids is not None else None
    if not ids and not all_records:
        raise ValueError("give operation_ids, or all=True to act on every matching record")
    return ids
