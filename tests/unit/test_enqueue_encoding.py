"""Enqueue's spliced envelope encoding (producer/encoding.py, issue 16) writes exactly the bytes of
the full encoding (core.envelope.encode_envelope), and fails exactly as it does."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pytest

from queue_system import QueueConfig, QueueRetryConfig, SerializationError
from queue_system.core.envelope import encode_envelope
from queue_system.producer import encoding, plan
from queue_system.producer.hooks import before_enqueue_sync
from tests.support.clock import FakeClock


def process_data(data: dict) -> dict:
    return data


def on_done(data: dict) -> None:
    pass


class TraceMeta:
    def before_enqueue(self, envelope: dict) -> None:
        envelope["meta"]["trace"] = "t-1"


def config(**kwargs: Any) -> QueueConfig:
    return QueueConfig(redis_url="redis://127.0.0.1:1/0", **kwargs)


def encoded(
    cfg: QueueConfig, entities: list[Any], **options: Any
) -> tuple[list[bytes], list[bytes]]:
    """The items of the script call as the manager builds them, and the full encoding of the
    same envelopes (after the hooks ran on them)."""
    draft = plan.draft_enqueue(cfg, entities, process_data, **options)
    items = before_enqueue_sync(cfg.hooks(), draft).args[9:]
    serializer = options.get("custom_serializer")
    full = [encode_envelope(e, serializer, cfg.max_payload_bytes) for e in draft.envelopes]
    return [items[3 * i + 1] for i in range(len(entities))], full


def stored(cfg: QueueConfig, entities: list[Any], **options: Any) -> list[bytes]:
    return encoded(cfg, entities, **options)[0]


ENTITIES: list[Any] = [
    {"user_id": 1, "note": "plain"},
    {"naïve": "café ☕ 日本", "emoji": "🙂", "esc": 'quo"te\\ \n\t\u0001'},
    {"nested": {"a": [1, 2.5, None, True, {"b": []}]}, "big": 10**30, "neg": -0.0},
    {"when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "d": decimal.Decimal("1.5")},
    {},
]

OPTIONS: list[dict[str, Any]] = [
    {},
    {"priority": "high", "queue_name": "emails.eu-1"},
    {"timeout": 2.5, "on_success": on_done, "on_failure": on_done},
    {"timeout": 3},
    {"deduplication_key": "user-ü-7"},
    {"deduplication_key": True},
    {"operation_ids": ["caller.id:1-x"]},
    {"expires": 60},
    {"delay": 30},
    {"retry_config": QueueRetryConfig(max_attempts=2)},  # not the default policy: full encoding
    {"custom_serializer": str},  # a custom serializer: full encoding
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize("entity", ENTITIES, ids=range(len(ENTITIES)))
def test_spliced_bytes_equal_the_full_encoding(entity: Any, options: dict[str, Any]) -> None:
    got, want = encoded(config(), [entity], **options)
    assert got == want


def test_batch_items_and_two_tiers_in_turn() -> None:
    cfg = config()
    for priority in ("high", "low", "high"):
        got = stored(cfg, ENTITIES, priority=priority)
        envelopes = [json.loads(item) for item in got]
        assert [e["entity"] for e in envelopes][:3] == ENTITIES[:3]
        assert {e["priority"] for e in envelopes} == {priority}
        for item, envelope in zip(got, envelopes, strict=True):
            assert item == encode_envelope(envelope)  # same bytes as re-encoding what it holds


def test_meta_from_a_hook_is_stored() -> None:
    got = stored(config(middleware=[TraceMeta()]), [{"n": 1}])
    assert json.loads(got[0])["meta"] == {"trace": "t-1"}


@pytest.mark.parametrize("now", [1_700_000_000, float("nan")], ids=["int-clock", "nan-clock"])
def test_a_clock_that_is_no_finite_float_takes_the_full_encoding(now: float) -> None:
    cfg = config(clock=FakeClock(now))
    if now != now:  # NaN: not JSON, refused as the full encoding refuses it
        with pytest.raises(SerializationError, match="not JSON compliant"):
            stored(cfg, [{"n": 1}])
        return
    envelope = json.loads(stored(cfg, [{"n": 1}])[0])
    assert envelope["enqueued_at"] == now and isinstance(envelope["enqueued_at"], int)


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ({"x": object()}, "entity cannot be serialized as JSON: .*object"),
        ({"x": float("inf")}, "entity cannot be serialized as JSON: Out of range float"),
        ({"x": "\ud800"}, "entity cannot be serialized as JSON: .*surrogate"),
        ({"x": "y" * 2000}, "over the 1000-byte limit"),
    ],
    ids=["not-json", "infinite", "lone-surrogate", "too-large"],
)
def test_errors_are_the_full_encodings(entity: Any, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        stored(config(max_payload_bytes=1000), [entity])


def test_a_cycle_is_reported_as_the_full_encoding_reports_it() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(SerializationError, match="Circular reference"):
        stored(config(), [loop])


def test_the_common_enqueue_is_spliced_and_the_rest_is_not() -> None:
    def envelope(cfg: QueueConfig, **options: Any) -> Any:
        draft = plan.draft_enqueue(cfg, [{"n": 1}], process_data, **options)
        return draft.envelopes[0]

    cfg = config()
    for options in OPTIONS[:-2]:  # the last two take the full encoding
        assert encoding.encode_new(envelope(cfg, **options)) is not None, options
    assert encoding.encode_new(envelope(cfg, retry_config=QueueRetryConfig(max_attempts=2))) is None
    assert encoding.encode_new({**envelope(cfg), "meta": {"a": 1}}) is None
