import json as json_module

import pytest

from queue_system.core.registry import CallableRegistry, qualified_name
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
