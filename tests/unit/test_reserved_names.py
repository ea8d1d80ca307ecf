"""Queue names that are the namespace's own key names are reserved, and stay in step with
KeySpace: a new fixed key added there without reserving its name fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from queue_system.core.checks import (
    RESERVED_QUEUE_NAMES,
    validate_new_queue_name,
    validate_queue_name,
)
from queue_system.engine.keys import KeySpace

# Methods building waiting-list keys, whose names are the queues themselves.
QUEUE_KEY_BUILDERS = {"queue", "parse_queue", "claim_order"}


def fixed_key_names(keys: KeySpace) -> dict[str, str]:
    """Every other key (or key prefix) KeySpace builds: attribute -> its first name segment."""
    built: dict[str, str] = {}
    for name, member in inspect.getmembers(KeySpace):
        if name.startswith("_") or name in QUEUE_KEY_BUILDERS or name == "prefix":
            continue
        if isinstance(member, property):
            value = getattr(keys, name)
        elif inspect.isfunction(member):
            value = getattr(keys, name)("some-id")
        else:
            continue
        assert value.startswith(keys.prefix), name
        built[name] = value[len(keys.prefix) :].split(":")[0]
    return built


def test_every_fixed_key_name_keyspace_builds_is_reserved() -> None:
    built = fixed_key_names(KeySpace("p:"))
    assert len(built) >= 15  # the introspection found the keys
    assert {attr: seg for attr, seg in built.items() if seg not in RESERVED_QUEUE_NAMES} == {}


@pytest.mark.parametrize("name", sorted(RESERVED_QUEUE_NAMES))
def test_new_queue_names_refuse_reserved_ones(name: str) -> None:
    with pytest.raises(ValueError, match=rf"queue_name '{name}' is reserved"):
        validate_new_queue_name(name)
    assert validate_queue_name(name) == name  # existing queues of that name stay readable


@pytest.mark.parametrize("name", ["Metrics", "failures2", "my_failures", "emails"])
def test_other_names_are_free(name: str) -> None:
    assert validate_new_queue_name(name) == name


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(ValueError, match="queue_name"):
        validate_new_queue_name("")


def test_the_readme_lists_every_reserved_name() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("own key names (")
    listed = set(re.findall(r"`([a-z_]+)`", readme[start : readme.index(") are reserved", start)]))
    assert listed == RESERVED_QUEUE_NAMES
