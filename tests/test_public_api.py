"""The public surface is the documented one, and modules import only downward."""

from __future__ import annotations

import queue_system
import utils


def test_queue_system_exports_the_documented_api() -> None:
    assert set(queue_system.__all__) == {
        "AsyncQueueManager", "ConfigurationError", "DecodeError", "ProcessingError", "QueueConfig",
        "QueueManager", "QueueRetryConfig", "QueueSystemError", "QueueUnavailableError",
        "QueueWorker", "SerializationError", "UnknownProcessorError",
    }  # fmt: skip
    for name in queue_system.__all__:
        assert getattr(queue_system, name).__doc__


def test_utils_exports_the_decorators() -> None:
    assert {"with_timeout", "circuit_breaker", "retry_with_backoff", "try_catch"} <= set(
        utils.__all__
    )
