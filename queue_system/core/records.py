"""Records an item leaves behind: attempt history, dead letters, callback data. Pure; no I/O.

A dead letter (``failures`` or ``system_errors``) holds the reason, the item's envelope and,
when the item could not be decoded, its raw bytes (text if UTF-8, else ``"base64:<data>"``),
so nothing is lost and an operator can requeue it.
"""

from __future__ import annotations

import base64
import json
import traceback
from typing import Any

from queue_system.core.envelope import decode_envelope
from queue_system.core.types import AttemptRecord, DeadLetter, Envelope
from queue_system.errors import DecodeError

TRACEBACK_MAX_CHARS = 4000  # per attempt record, so history cannot blow up an item


def attempt_record(exc: BaseException, at: float, rule: str | None = None) -> AttemptRecord:
    """What one failed run leaves in the item's history (``rule``: the retry rule that decided)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    record: AttemptRecord = {
        "at": at,
        "error_type": type(exc).__name__,
        "message": describe_exception(exc),
        "traceback": text[-TRACEBACK_MAX_CHARS:],
    }
    if rule is not None:
        record["rule"] = rule
    return record


def describe_exception(exc: BaseException) -> str:
    """``str(exc)``, else its ``repr``, else its type: an exception's own ``__str__`` may fail."""
    for describe in (str, repr):
        try:
            text = describe(exc)
        except Exception:  # noqa: S112 (user code raised inside __str__ / __repr__)
            continue
        if text:
            return text
    return f"<{type(exc).__name__}: str() and repr() failed>"


def dead_letter_record(
    *,
    reason: str,
    error_type: str,
    message: str,
    at: float,
    envelope: dict[str, Any] | None,
    raw: bytes | None = None,
    history: list[AttemptRecord] | None = None,
) -> DeadLetter:
    """A failures / system_errors record: the reason, the item, and its raw bytes if needed.

    ``raw`` is stored as text when it is UTF-8, else as ``"base64:<data>"``.
    """
    env = envelope or {}
    stored_raw: str | None = None
    if raw is not None:
        try:
            stored_raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            stored_raw = "base64:" + base64.b64encode(raw).decode()
    return {
        "operation_id": _str_or_none(env.get("id")),
        "reason": reason,
        "error_type": error_type,
        "message": message,
        "at": at,
        "queue": _str_or_none(env.get("queue")),
        "priority": _str_or_none(env.get("priority")),
        "processor": _str_or_none(env.get("processor")),
        "attempts": env.get("attempts", 0) if isinstance(env.get("attempts"), int) else 0,
        "history": history if history is not None else _history(env),
        "envelope": envelope,
        "raw": stored_raw,
    }


def decode_raw(stored: str) -> bytes:
    """Inverse of the ``raw`` encoding in :func:`dead_letter_record`."""
    if stored.startswith("base64:"):
        return base64.b64decode(stored[len("base64:") :])
    return stored.encode("utf-8")


def callback_data(envelope: Envelope, **extra: Any) -> dict[str, Any]:
    """The dict passed to ``on_success`` / ``on_failure``."""
    return {
        "operation_id": envelope["id"],
        "queue_name": envelope["queue"],
        "priority": envelope["priority"],
        "processor": envelope["processor"],
        "entity": envelope["entity"],
        "attempts": envelope["attempts"],
        **extra,
    }


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _history(env: dict[str, Any]) -> list[AttemptRecord]:
    history = env.get("history")
    return history if isinstance(history, list) else []


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """A dead-letter record as a dict, or None if the bytes are not a JSON object."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def stored_envelope(record: dict[str, Any] | None) -> Envelope:
    """The item a record holds: its raw bytes if kept, else its envelope; DecodeError if
    neither is a valid envelope (undecodable items cannot be requeued)."""
    if record is None:
        raise DecodeError("the dead-letter record itself is not JSON", b"")
    raw, envelope = record.get("raw"), record.get("envelope")
    if isinstance(raw, str):
        return decode_envelope(decode_raw(raw))
    if isinstance(envelope, dict):
        return decode_envelope(json.dumps(envelope).encode())
    raise DecodeError("the record holds no item", b"")


DEPENDENCY_FAILED = "dependency_failed"
"""The reason of a dead letter whose dependency (``depends_on``) did not complete."""


def dependency_failure_head(envelope: dict[str, Any], at: float) -> str:
    """The JSON of a ``dependency_failed`` dead letter without its closing brace: the Lua
    script that fails the item (it alone knows which dependency ended, and how) appends
    :func:`dependency_record_tail`, so the record reads like every other dead letter."""
    record: dict[str, Any] = dict(
        dead_letter_record(
            reason=DEPENDENCY_FAILED,
            error_type="DependencyFailed",
            message="",
            at=at,
            envelope=envelope,
        )
    )
    del record["message"]  # the tail ends with it
    return json.dumps(record, separators=(",", ":"), default=str)[:-1]


def dependency_record_tail(dependency_id: str, status: str) -> str:
    """What the Lua scripts append to :func:`dependency_failure_head` (ids and statuses are
    plain words: no JSON escaping needed)."""
    message = f"dependency {dependency_id} ended {status}"
    return (
        f',"dependency_id":"{dependency_id}","dependency_status":"{status}","message":"{message}"}}'
    )
