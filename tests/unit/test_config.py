"""QueueConfig: registration at import time, and validation of the result and skew settings.

Building a QueueConfig opens no connection, so these run without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from queue_system import QueueConfig

NO_SERVER = "redis://127.0.0.1:1/0"


@pytest.fixture
def make() -> Iterator[Callable[..., QueueConfig]]:
    made: list[QueueConfig] = []

    def build(**kwargs: Any) -> QueueConfig:
        config = QueueConfig(redis_url=NO_SERVER, **kwargs)
        made.append(config)
        return config

    yield build
    for config in made:
        config.redis_client.close()


# What an application module does: register its processors when it is imported.
APP = QueueConfig(redis_url=NO_SERVER)


@APP.processor
def bare(data: object) -> object:
    return data


@APP.processor(name="send_email")
async def named(data: object) -> None: ...


@APP.processor()
def empty_call(data: object) -> None: ...


def test_processor_decorator_registers_at_import_and_returns_the_function_unchanged() -> None:
    assert bare(5) == 5 and bare.__name__ == "bare"
    assert named.__name__ == "named"
    assert APP.registry.resolve(f"{__name__}:bare") is bare
    assert APP.registry.resolve("send_email") is named
    assert APP.registry.resolve(f"{__name__}:empty_call") is empty_call
    # enqueue stores the registered name (the alias): a worker importing this module knows it
    assert APP.registry.name_for(named) == "send_email"
    assert APP.registry.names() == sorted(
        [f"{__name__}:bare", "send_email", f"{__name__}:empty_call"]
    )


def test_processor_decorator_works_for_callbacks_with_a_module(
    make: Callable[..., QueueConfig],
) -> None:
    config = make()

    @config.processor(name="audit", module="hooks")
    def audit(data: dict[str, Any]) -> None: ...

    assert config.registry.resolve("hooks:audit") is audit


def test_processor_decorator_refuses_a_bare_string(make: Callable[..., QueueConfig]) -> None:
    with pytest.raises(TypeError, match="name="):
        make().processor("send_email")  # type: ignore[call-overload]


def test_new_settings_have_documented_defaults(make: Callable[..., QueueConfig]) -> None:
    config = make()
    assert config.unknown_processor_ttl == 3600.0
    assert config.max_result_bytes == 64 * 1024
    assert config.keep_results is True
    assert config.keep_results_for("anything") is True


def test_results_can_be_switched_off_globally_or_per_queue(
    make: Callable[..., QueueConfig],
) -> None:
    per_queue = make(queue_keep_results={"emails": False})
    assert per_queue.keep_results_for("emails") is False
    assert per_queue.keep_results_for("reports") is True
    inverted = make(keep_results=False, queue_keep_results={"audit": True})
    assert inverted.keep_results_for("audit") is True
    assert inverted.keep_results_for("emails") is False


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"unknown_processor_ttl": -1}, ValueError, "unknown_processor_ttl"),
        ({"unknown_processor_ttl": float("nan")}, ValueError, "unknown_processor_ttl"),
        ({"unknown_processor_ttl": True}, ValueError, "unknown_processor_ttl"),
        ({"unknown_processor_ttl": "1h"}, ValueError, "unknown_processor_ttl"),
        ({"max_result_bytes": 0}, ValueError, "max_result_bytes"),
        ({"max_result_bytes": 1.5}, ValueError, "max_result_bytes"),
        ({"keep_results": "no"}, TypeError, "keep_results must be True or False"),
        ({"keep_results": 0}, TypeError, "keep_results must be True or False"),
        ({"queue_keep_results": {"emails": "no"}}, TypeError, r"queue_keep_results\['emails'\]"),
        ({"queue_keep_results": {"a:b": False}}, ValueError, "queue_name"),
        ({"queue_keep_results": ["emails"]}, TypeError, "queue_keep_results must be a mapping"),
    ],
)
def test_new_settings_are_validated_with_clear_errors(
    make: Callable[..., QueueConfig], kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        make(**kwargs)


def test_unknown_processor_ttl_zero_means_no_waiting(make: Callable[..., QueueConfig]) -> None:
    assert make(unknown_processor_ttl=0).unknown_processor_ttl == 0.0
