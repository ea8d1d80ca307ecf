"""JSON envelopes: encode what producers enqueue, decode (and distrust) what workers read back.

Items are JSON, never pickle. Anything read from Redis is untrusted: :func:`decode_envelope`
checks every field it relies on and raises :class:`DecodeError` carrying the raw bytes, so the
worker can move the item to ``system_errors`` with its reason instead of dropping it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import re
import sys
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
    """JSON form of the types JSON lacks, converted without loss; anything else is refused.

    ======================  ==============================================================
    aware ``datetime``      ISO 8601 with its offset: ``"2026-01-02T03:04:05.123456+02:00"``
    naive ``datetime``      refused (TypeError): without an offset it names no instant
    ``date``, ``time``      ISO 8601: ``"2026-01-02"``, ``"09:30:00"``
    ``UUID``, ``Decimal``   their string (every digit of a Decimal kept: ``"0.10"``)
    ``Enum``                its ``value``
    dataclass instance      its fields, as ``dataclasses.asdict`` (their values converted too)
    pydantic model          ``model_dump(mode="json")`` (pydantic is never imported here)
    ``set``, ``frozenset``  refused (TypeError): a list would silently change the data
    anything else           refused (TypeError naming the type)
    ======================  ==============================================================

    ``json.dumps`` calls it only for values it cannot encode itself. It encodes tuples as
    lists and dict keys that are numbers, booleans or None as strings, as JSON requires.

    Raises:
        TypeError: the value has no lossless JSON form.
    """
    if isinstance(value, dt.datetime):
        if value.utcoffset() is None:
            raise TypeError(
                "naive datetime (no UTC offset) cannot be serialized: it names no instant; "
                "give it a timezone (datetime.now(timezone.utc), dt.replace(tzinfo=...)) "
                "or convert it with custom_serializer"
            )
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        raise TypeError(
            f"a {type(value).__name__} cannot be serialized: JSON has no sets, and a list "
            "would change the data; pass sorted(...) or list(...) yourself"
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # asdict's JSON without its deep copy: json.dumps converts the field values itself.
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if getattr(type(value), "model_dump", None) is not None:
        # A pydantic model's module is imported already, or it could not exist.
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(value, pydantic.BaseModel):
            return value.model_dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _with_custom(custom_serializer: Serializer) -> Serializer:
    """The ``default=`` hook trying ``custom_serializer`` first, then :func:`default_json`."""

    def hook(value: Any) -> Any:
        try:
            return custom_serializer(value)
        except TypeError:
            return default_json(value)

    return hook


def dumps(value: Any, custom_serializer: Serializer | None = None, *, what: str = "value") -> str:
    """Compact UTF-8 JSON of ``value``, converting other types as :func:`default_json` says.

    Args:
        value: what to encode.
        custom_serializer: a ``json.dumps`` ``default=`` hook tried before
            :func:`default_json`; raising TypeError hands a value on to it.
        what: the name used in the error message (``"entity"``).

    Raises:
        SerializationError: a value has no JSON form (its type named), or is NaN/infinite.
    """
    hook = default_json if custom_serializer is None else _with_custom(custom_serializer)
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=hook
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{what} cannot be serialized as JSON: {exc}") from exc


# Values json.dumps encodes itself (bool is an int): never a JSON object, never converted.
_JSON_NATIVE = (str, int, float, list, tuple, type(None))


def entity_object(
    value: Any, custom_serializer: Serializer | None = None, argument: str = "entity"
) -> dict[str, Any]:
    """``value`` as the JSON object an entity must be: a dict is kept as given.

    Another value is converted as :func:`dumps` would convert it (``custom_serializer`` first,
    then :func:`default_json`), so a dataclass instance or a pydantic model becomes its
    object; it must then be a dict.

    Raises:
        TypeError: ``value`` is not (and does not convert to) a dict; names ``argument``.
        SerializationError: converting it failed otherwise (e.g. a pydantic error).
    """
    if isinstance(value, dict):
        return value
    converted: Any = None
    if not isinstance(value, _JSON_NATIVE):
        hook = default_json if custom_serializer is None else _with_custom(custom_serializer)
        try:
            converted = hook(value)
        except TypeError:
            pass
        except (ValueError, RecursionError) as exc:
            raise SerializationError(f"{argument} cannot be serialized as JSON: {exc}") from exc
    if not isinstance(converted, dict):
        raise TypeError(
            f"{argument} must be a dict (a JSON object), got {type(value).__name__}; "
            "put other values inside one, e.g. {'value': ...}"
        )
    return converted


def encode_envelope(
    envelope: Envelope,
    custom_serializer: Serializer | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> bytes:
    """Envelope → UTF-8 JSON bytes; SerializationError if not JSON-able or over ``max_bytes``."""
    text = dumps(envelope, custom_serializer, what="entity")
    try:
        data = text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate in a str
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
    "meta": dict,
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


_OPENING_ID = re.compile(re.escape(ENVELOPE_OPENING.encode()) + rb'([A-Za-z0-9_.:\-]+)"')


def operation_id_of(raw: bytes) -> str | None:
    """The operation id an item's opening bytes name (what the Lua scripts read), or None for
    bytes that do not start like an envelope. Untrusted: only for logs and key lookups."""
    match = _OPENING_ID.match(raw)
    return match.group(1).decode() if match else None
