"""Shared type names: priorities, user callables, and the records written to Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypedDict

Priority = Literal["high", "normal", "low"]
#: Claim order: every ready high item before any normal, every normal before any low.
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")

JSONDict = dict[str, Any]
Processor = Callable[[Any], Any | Awaitable[Any]]
Callback = Callable[[JSONDict], Any | Awaitable[Any]]
CallableRef = Callable[..., Any] | str


class AttemptRecord(TypedDict):
    """One failed run of an item, kept in its envelope's history."""

    at: float
    error_type: str
    message: str
    traceback: str


class Envelope(TypedDict, total=False):
    """An item as stored in a waiting list (JSON). ``v`` is the schema version."""

    v: int
    id: str
    queue: str
    priority: Priority
    processor: str
    entity: Any
    retry: JSONDict
    on_success: str | None
    on_failure: str | None
    timeout: float | None
    dedup: str | None
    attempts: int
    first_at: float
    enqueued_at: float
    history: list[AttemptRecord]
    #: When a worker first found its processor or callback unknown (deploy skew), epoch s.
    unknown_since: float


class DeadLetter(TypedDict):
    """A record in ``failures`` or ``system_errors``: why, when, and the original item."""

    operation_id: str | None
    reason: str
    error_type: str
    message: str
    at: float
    queue: str | None
    priority: str | None
    processor: str | None
    attempts: int
    history: list[AttemptRecord]
    envelope: JSONDict | None
    raw: str | None
