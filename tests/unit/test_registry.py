import json as json_module

import pytest

from queue_system.core.registry import (
    CallableRegistry,
    qualified_name,
    unknown_first_seen,
    unknown_recheck_due,
)
from queue_system.errors import UnknownProcessorError


def double(x: int) -> int:
    return 2 * x


def test_callable_is_stored_by_qualified_name_and_registered_on_first_use() -> None:
    registry = CallableRegistry()
    name = registry.name_for(double)
    assert name == f"{__name__}:double"
    assert registry.resolve(name) is double


def test_alias_registration() -> None:
    registry = CallableRegistry()
    assert registry.register(double, name="twice") == "twice"
    assert registry.register(double, name="twice", module="math_ops") == "math_ops:twice"
    assert registry.resolve("twice") is double
    assert registry.name_for(double) == "twice"


@pytest.mark.parametrize("name", ["os:system", "subprocess:run", "builtins:eval", "os.system"])
def test_unregistered_names_are_never_imported(name: str) -> None:
    with pytest.raises(UnknownProcessorError, match="not registered"):
        CallableRegistry().resolve(name)


def test_allowed_module_prefix_imports_only_below_it() -> None:
    registry = CallableRegistry(allowed_modules=["json"])
    assert registry.resolve("json:dumps") is json_module.dumps
    with pytest.raises(UnknownProcessorError):
        registry.resolve("jsonx:dumps")
    with pytest.raises(UnknownProcessorError, match="cannot be imported"):
        registry.resolve("json:no_such_function")


def test_lambdas_and_nested_functions_are_refused() -> None:
    def nested() -> None: ...

    with pytest.raises(TypeError, match="lambda or nested"):
        qualified_name(lambda: None)
    with pytest.raises(TypeError, match="lambda or nested"):
        CallableRegistry().name_for(nested)


@pytest.mark.parametrize("name", ["", "a b", "x\n", "<lambda>", "a" * 300])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        CallableRegistry().name_for(name)


def test_non_callable_is_refused() -> None:
    with pytest.raises(TypeError):
        CallableRegistry().register(42)  # type: ignore[arg-type]


# --- waiting for a deploy: when an unknown processor is looked for again -----------------------


@pytest.mark.parametrize(
    ("waited", "due_in"),
    [(0, 1), (0.5, 1), (1, 1), (2, 2), (4, 4), (8, 8), (50, 50), (100, 60), (3000, 60)],
)
def test_unknown_recheck_backs_off_from_1s_doubling_to_60s(waited: float, due_in: float) -> None:
    first_seen = 1_000.0
    now = first_seen + waited
    assert unknown_recheck_due(first_seen, now, ttl_s=3600) == now + due_in


def test_unknown_recheck_stops_at_the_ttl() -> None:
    assert unknown_recheck_due(0.0, 3590.0, ttl_s=3600) == 3600.0  # not past the deadline
    assert unknown_recheck_due(0.0, 3600.0, ttl_s=3600) is None
    assert unknown_recheck_due(0.0, 0.0, ttl_s=0) is None  # ttl 0: no waiting at all


def test_unknown_first_seen_in_the_future_or_not_finite_counts_from_now() -> None:
    # Another host's clock ahead, or a forged value: the wait never exceeds the ttl from now
    assert unknown_first_seen(1e300, now_s=10.0) == 10.0
    assert unknown_first_seen(float("nan"), now_s=10.0) == 10.0
    assert unknown_first_seen(None, now_s=10.0) == 10.0
    assert unknown_first_seen(4.0, now_s=10.0) == 4.0
