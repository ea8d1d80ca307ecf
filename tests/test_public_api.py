"""The public surface is the documented one, and nothing else is public by accident."""

from __future__ import annotations

import inspect
import types

import queue_system
import utils

DOCUMENTED = {
    "AsyncQueueManager",
    "ConfigurationError",
    "DecodeError",
    "Middleware",
    "NonRetryableError",
    "JobContext",
    "NoJobContextError",
    "OperationCancelled",
    "OperationError",
    "OperationExpired",
    "OperationFailed",
    "OperationNotFound",
    "ProcessingError",
    "QueueAdmin",
    "QueueConfig",
    "QueueLimits",
    "QueueManager",
    "QueueRetryConfig",
    "QueueSystemError",
    "QueueUnavailableError",
    "QueueWorker",
    "ReplicationTimeoutError",
    "RetryAfter",
    "SerializationError",
    "UnknownProcessorError",
    "run_workers",
    "WaitTimeout",
    "current_job",
}


def test_queue_system_exports_the_documented_api() -> None:
    assert set(queue_system.__all__) == DOCUMENTED
    for name in queue_system.__all__:
        assert getattr(queue_system, name).__doc__


def test_every_public_name_of_the_package_is_in_all() -> None:
    # As httpx does: any public attribute that is not a subpackage must be listed in __all__.
    public = {
        name
        for name, value in vars(queue_system).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(queue_system.__all__)


def test_utils_exports_the_decorators() -> None:
    assert {"with_timeout", "circuit_breaker", "retry_with_backoff", "try_catch"} <= set(
        utils.__all__
    )


# Returns that are Any on purpose: a processor's result is whatever it returned.
ANY_ON_PURPOSE = {"QueueManager.wait_for", "AsyncQueueManager.wait_for"}


def test_every_public_method_of_the_main_classes_returns_a_named_type() -> None:
    # A record-shaped answer is a TypedDict of core/types.py (or ops/), never dict[str, Any]
    untyped = []
    for cls in (
        queue_system.QueueManager,
        queue_system.AsyncQueueManager,
        queue_system.QueueWorker,
        queue_system.QueueAdmin,
        queue_system.QueueConfig,
    ):
        for name, member in inspect.getmembers(cls):
            function = member.fget if isinstance(member, property) else member
            if name.startswith("_") or not callable(function):
                continue
            returned = str(function.__annotations__.get("return", "<none>"))
            if f"{cls.__name__}.{name}" in ANY_ON_PURPOSE:
                continue
            if returned in ("<none>", "Any") or "dict[str, Any]" in returned:
                untyped.append(f"{cls.__name__}.{name} -> {returned}")
    assert untyped == []
