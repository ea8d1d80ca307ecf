import datetime as dt
import json
import uuid

import pytest

from queue_system.core.envelope import SCHEMA_VERSION, decode_envelope, encode_envelope
from queue_system.errors import DecodeError, SerializationError


def envelope(**overrides: object) -> dict:
    retry = {"max_attempts": 1, "delays": [1.0], "timeout": None, "jitter": 0.1}
    times = {"attempts": 0, "first_at": 1.0, "enqueued_at": 1.0, "history": []}
    base = dict(v=SCHEMA_VERSION, id="op1", queue="q", priority="high", processor="m:f")
    base.update(entity={"a": 1}, retry=retry, **times)
    base.update(overrides)
    return base


def test_round_trip() -> None:
    env = envelope()
    assert decode_envelope(encode_envelope(env)) == env  # type: ignore[arg-type]


def test_common_types_and_custom_serializer() -> None:
    class Money:
        cents = 150

    def money_only(obj: object) -> object:
        if isinstance(obj, Money):
            return {"cents": obj.cents}
        raise TypeError(type(obj).__name__)  # the built-in defaults handle the rest

    data = encode_envelope(
        envelope(
            entity={
                "when": dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc),
                "id": uuid.UUID(int=1),
                "m": Money(),
            }
        ),  # type: ignore[arg-type]
        custom_serializer=money_only,
    )
    entity = json.loads(data)["entity"]
    assert entity["when"] == "2026-01-02T00:00:00+00:00"
    assert entity["id"] == str(uuid.UUID(int=1))
    assert entity["m"] == {"cents": 150}


@pytest.mark.parametrize("entity", [{"x": object()}, {"nan": float("nan")}, {1j: 2}])
def test_unserializable_entity_is_a_clear_error(entity: object) -> None:
    with pytest.raises(SerializationError, match="JSON"):
        encode_envelope(envelope(entity=entity))  # type: ignore[arg-type]


def test_size_limit() -> None:
    with pytest.raises(SerializationError, match="limit"):
        encode_envelope(envelope(entity="x" * 2000), max_bytes=1000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00garbage",
        b'{"v": 1, "id": "x"',
        b"[1, 2, 3]",
        json.dumps(envelope(v=99)).encode(),
        json.dumps(envelope(priority="urgent")).encode(),
        json.dumps(envelope(queue="a:b")).encode(),
        json.dumps(envelope(attempts="3")).encode(),
        json.dumps(envelope(attempts=True)).encode(),
        json.dumps({k: v for k, v in envelope().items() if k != "entity"}).encode(),
        json.dumps(envelope(on_success=5)).encode(),
    ],
)
def test_decode_errors_keep_the_raw_bytes(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_envelope(raw)
    assert info.value.raw == raw
