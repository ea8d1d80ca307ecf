"""What queue_system relies on in its dependencies, checked on whatever versions are installed.

``./scripts/test`` runs these on the newest releases and ``./scripts/test-lowest`` on the
declared floors, so a release that changes something relied on here fails a named test instead
of a user's program. pybreaker is subclassed, so its private members are kept out of reach: the
adapter (queue_system/resilience/breaker.py) may touch only names it defines itself.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pybreaker
import pytest
import redis.asyncio
import tenacity
from freezegun import freeze_time

from queue_system.resilience import breaker as breaker_module
from queue_system.resilience import breaker_storage

BREAKER_SOURCES = [
    Path(inspect.getfile(breaker_module)),
    Path(inspect.getfile(breaker_storage)),
]


# --- pybreaker: no private member used, none shadowed -------------------------------------------


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def pybreaker_names() -> set[str]:
    """Every attribute and function name pybreaker's own source uses or defines."""
    tree = ast.parse(Path(inspect.getfile(pybreaker)).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


@dataclass(kw_only=True)
class ClassFacts:
    """What one class of the adapter defines and which private names it reaches for."""

    name: str
    subclasses_pybreaker: bool
    methods: set[str] = field(default_factory=set)
    instance_attributes: set[str] = field(default_factory=set)
    private_uses: list[tuple[int, str, str]] = field(default_factory=list)  # line, object, name


def class_facts(source: str) -> tuple[list[ClassFacts], list[tuple[int, str]]]:
    """The adapter's classes, and private names reached outside any class (line, name)."""
    tree = ast.parse(source)
    classes: list[ClassFacts] = []
    in_classes: set[int] = set()
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        facts = ClassFacts(
            name=node.name,
            subclasses_pybreaker=any(
                isinstance(base, ast.Attribute)
                and isinstance(base.value, ast.Name)
                and base.value.id == "pybreaker"
                for base in node.bases
            ),
        )
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                facts.methods.add(item.name)
        for sub in ast.walk(node):
            in_classes.add(id(sub))
            if isinstance(sub, ast.Assign | ast.AnnAssign):
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        facts.instance_attributes.add(target.attr)
            if isinstance(sub, ast.Attribute) and is_private(sub.attr):
                owner = ast.unparse(sub.value)
                facts.private_uses.append((sub.lineno, owner, sub.attr))
        classes.append(facts)
    outside = [
        (node.lineno, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and is_private(node.attr) and id(node) not in in_classes
    ]
    return classes, outside


def private_member_violations(source: str) -> list[str]:
    """Each place the adapter reaches a private name it does not define itself."""
    classes, outside = class_facts(source)
    found = [f"line {line}: .{name} outside a class" for line, name in outside]
    for facts in classes:
        own = facts.methods | facts.instance_attributes
        found += [
            f"line {line}: {owner}.{name} in {facts.name}"
            for line, owner, name in sorted(facts.private_uses)
            if owner != "self" or name not in own
        ]
    return found


def test_the_breaker_adapter_uses_no_private_pybreaker_member() -> None:
    # self._x must be an attribute or method the same class defines; nothing else's _x at all.
    for source in BREAKER_SOURCES:
        assert private_member_violations(source.read_text()) == [], source


def test_the_adapters_own_names_do_not_shadow_pybreakers() -> None:
    # A name pybreaker also uses would silently replace (or be replaced by) its member.
    theirs = pybreaker_names()
    classes = [facts for src in BREAKER_SOURCES for facts in class_facts(src.read_text())[0]]
    subclasses = [facts for facts in classes if facts.subclasses_pybreaker]
    assert {facts.name for facts in subclasses} >= {
        "CircuitBreaker",
        "WindowedMemoryStorage",
        "WindowedRedisStorage",
    }
    clashes = {
        facts.name: sorted(
            (facts.instance_attributes | {m for m in facts.methods if is_private(m)}) & theirs
        )
        for facts in subclasses
    }
    assert clashes == {facts.name: [] for facts in subclasses}


def test_the_private_member_check_catches_a_private_use() -> None:
    # The check itself can fail: pybreaker's lock and a state's handler, as once used here.
    source = inspect.cleandoc(
        """
        class CircuitBreaker(pybreaker.CircuitBreaker):
            def reset(self):
                with self._lock:
                    ticket.state._handle_success()
        """
    )
    assert private_member_violations(source) == [
        "line 3: self._lock in CircuitBreaker",
        "line 4: ticket.state._handle_success in CircuitBreaker",
    ]


# --- pybreaker: the public behaviour the adapter builds on -------------------------------------


class Transitions(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str]] = []

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self.seen.append((old_state.name if old_state else None, new_state.name))


def test_pybreaker_makes_a_new_state_object_on_each_transition_and_tells_listeners() -> None:
    # CircuitBreaker._finish ignores a result when the state object that admitted the call is
    # no longer the current one: that needs a new object per transition and the same one between.
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    listener = Transitions()
    cb = pybreaker.CircuitBreaker(state_storage=storage, listeners=[listener])
    seen = [cb.state]
    assert cb.state is seen[-1]
    for transition in (cb.open, cb.half_open, cb.close):
        transition()
        assert cb.state is not seen[-1]
        seen.append(cb.state)
        assert cb.state is seen[-1]
    assert [s.name for s in seen] == ["closed", "open", "half-open", "closed"]
    assert listener.seen == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]

    # State changed in the storage by someone else (another process, with Redis): the next
    # read of cb.state follows it and tells the listeners.
    storage.state = pybreaker.STATE_OPEN
    assert cb.state is not seen[-1] and cb.state.name == "open"
    assert listener.seen[-1] == ("closed", "open")


@freeze_time("2030-01-02 03:04:05")
def test_pybreaker_open_stores_an_aware_utc_opened_at() -> None:
    # CircuitBreaker.retry_at adds the recovery timeout to it and compares with an aware now.
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    cb = pybreaker.CircuitBreaker(state_storage=storage)
    cb.open()
    assert storage.opened_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert storage.opened_at is not None and storage.opened_at.tzinfo is not None


def test_pybreaker_exclude_takes_a_predicate() -> None:
    cb = pybreaker.CircuitBreaker(exclude=[lambda exc: isinstance(exc, KeyError)])
    assert cb.is_system_error(ConnectionError()) is True
    assert cb.is_system_error(KeyError()) is False


def test_the_redis_storage_implements_pybreakers_whole_storage_interface() -> None:
    # It subclasses the base storage, whose methods are silent no-ops: one pybreaker adds later
    # (as 1.4 added the success counter) and calls would otherwise do nothing here.
    interface = {
        name
        for name in vars(pybreaker.CircuitBreakerStorage)
        if not name.startswith("_") and name != "name"
    }
    assert interface >= {"state", "counter", "increment_counter", "reset_counter", "opened_at"}
    implemented = set(vars(breaker_storage.WindowedRedisStorage))
    assert sorted(interface - implemented) == []


# --- tenacity --------------------------------------------------------------------------------


def test_tenacity_computes_the_wait_before_asking_stop() -> None:
    # stop_before_delay (retry_with_backoff's total_timeout) reads upcoming_sleep in the stop
    # condition; tenacity < 8.3 asked stop first, with upcoming_sleep still 0.
    upcoming: list[float] = []

    def stop(state: tenacity.RetryCallState) -> bool:
        upcoming.append(state.upcoming_sleep)
        return True

    retrying = tenacity.Retrying(wait=lambda state: 7.0, stop=stop, reraise=True)
    with pytest.raises(ConnectionError):
        retrying(lambda: (_ for _ in ()).throw(ConnectionError("down")))
    assert upcoming == [7.0]


def test_tenacity_takes_a_plain_callable_as_wait() -> None:
    slept: list[float] = []
    attempts: list[int] = []

    def wait(state: tenacity.RetryCallState) -> float:
        attempts.append(state.attempt_number)
        return 0.25 * state.attempt_number

    outcomes = iter([ConnectionError("1"), ConnectionError("2"), None])

    def flaky() -> str:
        error = next(outcomes)
        if error is not None:
            raise error
        return "ok"

    retrying = tenacity.Retrying(wait=wait, sleep=slept.append, reraise=True)
    assert retrying(flaky) == "ok"
    assert (attempts, slept) == ([1, 2], [0.25, 0.5])


# --- redis -----------------------------------------------------------------------------------


def test_redis_asyncio_client_has_aclose() -> None:
    # The worker and the async producer close their clients with aclose() (redis-py >= 5.0.1;
    # close() is deprecated there).
    assert inspect.iscoroutinefunction(redis.asyncio.Redis.aclose)
