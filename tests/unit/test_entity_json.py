"""What an entity may hold: JSON, plus a documented table of types converted without loss.

Everything else is refused with a SerializationError naming the type, never changed silently
(a set is not turned into a list, a naive datetime is not written without an offset).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import subprocess
import sys
import uuid
from typing import Any

import pydantic
import pytest

from queue_system.core.envelope import dumps, entity_object
from queue_system.errors import SerializationError


class Colour(enum.Enum):
    RED = "red"
    DEPTH = 3


@dataclasses.dataclass
class Line:
    sku: str
    price: decimal.Decimal
    at: dt.datetime


class Order(pydantic.BaseModel):
    id: uuid.UUID
    at: dt.datetime
    total: decimal.Decimal
    tags: set[str]


UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))
AWARE = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC_PLUS_2)


def encoded(value: Any) -> Any:
    return json.loads(dumps({"v": value}))["v"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (AWARE, "2026-01-02T03:04:05.123456+02:00"),
        (dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc), "2026-01-02T00:00:00+00:00"),
        (dt.date(2026, 1, 2), "2026-01-02"),
        (dt.time(9, 30), "09:30:00"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (decimal.Decimal("0.1"), "0.1"),
        (decimal.Decimal("12345678901234567890.000000001"), "12345678901234567890.000000001"),
        (Colour.RED, "red"),
        (Colour.DEPTH, 3),
    ],
)
def test_supported_types_convert_without_loss(value: object, expected: object) -> None:
    assert encoded(value) == expected


def test_dataclass_converts_as_asdict_with_its_fields_converted_too() -> None:
    line = Line(sku="a-1", price=decimal.Decimal("9.99"), at=AWARE)
    assert encoded(line) == {"sku": "a-1", "price": "9.99", "at": AWARE.isoformat()}

    @dataclasses.dataclass
    class Basket:
        lines: list[Line]
        by_sku: dict[str, Line]

    basket = Basket(lines=[line], by_sku={"a-1": line})
    assert encoded(basket) == encoded(dataclasses.asdict(basket))


def test_pydantic_model_converts_through_its_own_json_dump() -> None:
    order = Order(id=uuid.UUID(int=2), at=AWARE, total=decimal.Decimal("1.50"), tags={"x"})
    assert encoded(order) == order.model_dump(mode="json")


def test_naive_datetime_is_refused_with_a_clear_error() -> None:
    with pytest.raises(SerializationError, match=r"naive datetime.*timezone|tzinfo"):
        dumps({"when": dt.datetime(2026, 1, 2)})


@pytest.mark.parametrize("value", [{1, 2}, frozenset({"a"})])
def test_sets_are_refused_not_turned_into_lists(value: object) -> None:
    with pytest.raises(SerializationError, match=r"set.*list"):
        dumps({"tags": value})


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"raw", "bytes"),
        (object(), "object"),
        (dt.timedelta(seconds=1), "timedelta"),
        (Line, "type"),
    ],
)
def test_anything_else_is_refused_naming_its_type(value: object, type_name: str) -> None:
    with pytest.raises(SerializationError, match=rf"\b{type_name}\b"):
        dumps({"x": value})


def test_custom_serializer_wins_before_the_table() -> None:
    def mine(obj: object) -> object:
        if isinstance(obj, (set, frozenset)):
            return sorted(obj)
        if isinstance(obj, dt.datetime):
            return "my-time"
        raise TypeError(type(obj).__name__)  # the table handles the rest

    data = json.loads(
        dumps({"s": {2, 1}, "naive": dt.datetime(2026, 1, 2), "u": uuid.UUID(int=3)}, mine)
    )
    assert data == {"s": [1, 2], "naive": "my-time", "u": str(uuid.UUID(int=3))}


@pytest.mark.parametrize(
    "value", ["hello", None, [{"a": 1}], {"a"}, 3, 1.5, True, b"{}", (1, 2), Colour.RED]
)
def test_an_entity_that_is_not_a_json_object_is_a_type_error_naming_the_argument(
    value: object,
) -> None:
    with pytest.raises(TypeError, match=r"^entities\[4\] must be a dict") as info:
        entity_object(value, argument="entities[4]")
    assert type(value).__name__ in str(info.value)


def test_a_dict_entity_is_kept_as_given() -> None:
    entity = {"a": 1}
    assert entity_object(entity) is entity


def test_dataclass_and_pydantic_entities_become_their_json_objects() -> None:
    line = Line(sku="a", price=decimal.Decimal("1"), at=AWARE)
    assert entity_object(line) == {"sku": "a", "price": decimal.Decimal("1"), "at": AWARE}
    order = Order(id=uuid.UUID(int=2), at=AWARE, total=decimal.Decimal("1.50"), tags=set())
    assert entity_object(order) == order.model_dump(mode="json")


def test_custom_serializer_may_turn_an_entity_into_a_dict() -> None:
    class Money:
        cents = 150

    def money(obj: object) -> object:
        if isinstance(obj, Money):
            return {"cents": obj.cents}
        raise TypeError(type(obj).__name__)

    assert entity_object(Money(), money) == {"cents": 150}
    with pytest.raises(TypeError, match="entity must be a dict"):
        entity_object(Money())


def test_encoding_never_imports_pydantic() -> None:
    code = (
        "import sys, dataclasses, datetime as dt\n"
        "from queue_system.core.envelope import dumps\n"
        "class HasDump:\n"
        "    def model_dump(self, **kw): return {}\n"
        "try:\n"
        "    dumps({'x': HasDump()})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["SerializationError", "False"]
