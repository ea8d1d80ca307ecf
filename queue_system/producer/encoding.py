"""A new item's envelope encoded from cached parts: enqueue's hot path (issue 16). No I/O.

:func:`encode_new` gives the bytes ``core.envelope.encode_envelope`` would give for an envelope
as ``producer.plan.draft_enqueue`` builds it, splicing the item's own values between parts that
are the same for every item of a tier.
"""

from __future__ import annotations

import functools
import json
import math
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from typing import Any

from queue_system.core.envelope import SCHEMA_VERSION, default_json
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.core.types import Envelope

_NEW_KEYS = (
    "v",
    "id",
    "queue",
    "priority",
    "processor",
    "entity",
    "retry",
    "on_success",
    "on_failure",
    "timeout",
    "dedup",
    "attempts",
    "first_at",
    "enqueued_at",
    "history",
)
_NEW_KEYS_EXPIRING = (*_NEW_KEYS, "expires_at")
#: json.dumps as core.envelope.dumps calls it, built once (json.dumps builds one per call).
_ENCODE = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default_json
).encode
# The C encoder behind it, called directly (JSONEncoder.encode makes a new one per call);
# no circular-reference markers: a cycle ends in RecursionError, and the full encoding then
# reports it. None where the interpreter has no C accelerator.
_C_ENCODER = (
    None
    if c_make_encoder is None or c_encode_basestring is None
    else c_make_encoder(
        None, default_json, c_encode_basestring, None, ":", ",", False, False, False
    )
)
#: (queue, priority, processor, on_success, on_failure, timeout) -> the encoded middle parts.
_MIDDLES: dict[tuple[Any, ...], tuple[str, str]] = {}
_MIDDLES_MAX = 512  # distinct tiers x callbacks a process enqueues to; cleared when exceeded


def encode_new(envelope: Envelope) -> bytes | None:
    """The bytes :func:`encode_envelope` gives for an envelope as :func:`draft_enqueue` builds
    it (no custom serializer, the default retry policy, no ``meta``), spliced from the item's
    own values and parts that are the same for every item of a tier (cached). None for any
    other envelope, and for one that does not encode here (the caller then encodes it in
    full, which raises the usual SerializationError)."""
    if (
        _C_ENCODER is None
        or envelope.get("retry") is not default_retry_dict()
        or tuple(envelope) not in (_NEW_KEYS, _NEW_KEYS_EXPIRING)
        or envelope["v"] != SCHEMA_VERSION
        or envelope["attempts"] != 0
        or envelope["history"]
    ):
        return None
    tier = (
        envelope["queue"],
        envelope["priority"],
        envelope["processor"],
        envelope["on_success"],
        envelope["on_failure"],
        envelope["timeout"],
    )
    first_at = _float(envelope["first_at"])
    same = envelope["enqueued_at"] is envelope["first_at"]  # a new item's: both are "now"
    enqueued_at = first_at if same else _float(envelope["enqueued_at"])
    expires_at = _float(envelope["expires_at"]) if "expires_at" in envelope else ""
    dedup = envelope["dedup"]
    if first_at is None or enqueued_at is None or expires_at is None:
        return None
    try:
        middles = _MIDDLES.get(tier)
        if middles is None:
            middles = _encode_middles(tier)
            if len(_MIDDLES) >= _MIDDLES_MAX:
                _MIDDLES.clear()
            _MIDDLES[tier] = middles
        text = "".join(
            (
                f'{{"v":{SCHEMA_VERSION},"id":',
                c_encode_basestring(envelope["id"]),
                middles[0],
                *_C_ENCODER(envelope["entity"], 0),
                middles[1],
                "null" if dedup is None else c_encode_basestring(dedup),
                ',"attempts":0,"first_at":',
                first_at,
                ',"enqueued_at":',
                enqueued_at,
                ',"history":[]',
                f',"expires_at":{expires_at}' if expires_at else "",
                "}",
            )
        )
        return text.encode()
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None


def _float(value: Any) -> str | None:
    """A finite float as JSON (json.dumps writes ``float.__repr__``); None for anything else."""
    return float.__repr__(value) if type(value) is float and math.isfinite(value) else None


def _encode_middles(tier: tuple[Any, ...]) -> tuple[str, str]:
    """The parts between ``id`` and ``entity``, and between ``entity`` and ``dedup``."""
    queue, priority, processor, on_success, on_failure, timeout = map(_ENCODE, tier)
    return (
        f',"queue":{queue},"priority":{priority},"processor":{processor},"entity":',
        f',"retry":{_ENCODE(default_retry_dict())},"on_success":{on_success},'
        f'"on_failure":{on_failure},"timeout":{timeout},"dedup":',
    )


@functools.cache
def default_retry_dict() -> dict[str, Any]:
    """``QueueRetryConfig().to_dict()``, built once (enqueue's hot path); never mutated."""
    return QueueRetryConfig().to_dict()
