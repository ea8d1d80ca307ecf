"""JSON envelopes: encode what producers enqueue, decode (and distrust) what workers read back.

Items are JSON, never pickle. Anything read from Redis is untrusted: :func:`decode_envelope`
checks every field it relies on and raises :class:`DecodeError` carrying the raw bytes, so the
worker can move the item to ``system_errors`` with its reason instead of dropping it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid
from collections.abc import Callable
from typing import Any, cast

from queue_system.core.checks import OPERATION_ID_PATTERN, QUEUE_NAME_PATTERN
from queue_system.core.types import PRIORITIES, Envelope
from queue_system.errors import DecodeError, SerializationError

SCHEMA_VERSION = 1
# Every item encode_envelope writes opens with these bytes ("v" then "id" come first). Lua
# scripts read an item's operation id from them without decoding the JSON, with exactly
# LUA_OPERATION_ID_PATTERN (tests/unit/test_envelope_opening.py checks every script uses it,
# and that its id characters are core.checks.OPERATION_ID_PATTERN's).
ENVELOPE_OPENING = f'{{"v":{SCHEMA_VERSION},"id":"'
LUA_OPERATION_ID_PATTERN = "^" + ENVELOPE_OPENING + '([%w_.:%-]+)"'
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024  # 1 MiB per encoded item

Serializer = Callable[[Any], Any]


def default_json(value: Any) -> Any:
    """JSON form of common non-JSON types: datetimes (ISO 8601), UUID, Decimal, Enum, sets."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, custom_serializer: Serializer | None = None) -> str:
    """Compact JSON; ``custom_serializer`` handles types JSON lacks, before the defaults."""
    if custom_serializer is None:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default_json
        )

    def fallback(obj: Any) -> Any:
        if custom_serializer is not None:
            try:
                return custom_serializer(obj)
            except TypeError:
                pass
        return default_json(obj)

    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=fallback
    )


def encode_envelope(
    envelope: Envelope,
    custom_serializer: Serializer | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> bytes:
    """Envelope → UTF-8 JSON bytes; SerializationError if not JSON-able or over ``max_bytes``."""
    try:
        data = dumps(envelope, custom_serializer).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"entity cannot be serialized as JSON: {exc}") from exc
    if len(data) > max_bytes:
        raise SerializationError(
            f"item is {len(data)} bytes encoded, over the {max_bytes}-byte limit "
            "(QueueConfig(max_payload_bytes=...))"
        )
    return data


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "queue": str,
    "priority": str,
    "processor": str,
    "retry": dict,
    "attempts": int,
    "first_at": (int, float),
    "enqueued_at": (int, float),
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "on_success": str,
    "on_failure": str,
    "timeout": (int, float),
    "dedup": str,
    "history": list,
    "unknown_since": (int, float),
}


def decode_envelope(raw: bytes) -> Envelope:
    """Bytes read from Redis → a checked Envelope, or DecodeError(reason, raw)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"item is not UTF-8: {exc}", raw) from exc
    except ValueError as exc:
        raise DecodeError(f"item is not valid JSON: {exc}", raw) from exc
    if not isinstance(data, dict):
        raise DecodeError(f"item is JSON {type(data).__name__}, expected an object", raw)
    if data.get("v") != SCHEMA_VERSION:
        raise DecodeError(f"unsupported envelope version {data.get('v')!r}", raw)
    for name, kind in _REQUIRED.items():
        if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
            raise DecodeError(f"envelope field {name!r} is missing or of the wrong type", raw)
    for name, kind in _OPTIONAL.items():
        value = data.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise DecodeError(f"envelope field {name!r} has the wrong type", raw)
    if data["priority"] not in PRIORITIES or not QUEUE_NAME_PATTERN.fullmatch(data["queue"]):
        raise DecodeError("envelope has an invalid queue name or priority", raw)
    if not OPERATION_ID_PATTERN.fullmatch(data["id"]):
        raise DecodeError("envelope has an invalid operation id", raw)
    if "entity" not in data:
        raise DecodeError("envelope has no entity", raw)
    return cast(Envelope, data)


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes; names we wrote are always UTF-8)."""
    return value.decode() if isinstance(value, bytes) else value


def envelope_summary(raw: bytes) -> dict[str, Any] | None:
    """Best-effort parse of an item that failed validation (for dead-letter context)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
