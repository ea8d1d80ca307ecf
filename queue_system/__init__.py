"""queue_system: a Redis-backed priority job queue that never loses an item.

Public API::

    from queue_system import QueueConfig, QueueManager, QueueWorker, QueueRetryConfig

Operators also get :class:`QueueAdmin` (health, dead letters) and the error classes. The
typed shapes of what the API returns live in :mod:`queue_system.core.types`.
"""

from queue_system.config import QueueConfig
from queue_system.core.job_context import JobContext, current_job
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.errors import (
    ConfigurationError,
    DecodeError,
    NoJobContextError,
    OperationCancelled,
    OperationError,
    OperationExpired,
    OperationFailed,
    OperationNotFound,
    ProcessingError,
    QueueSystemError,
    QueueUnavailableError,
    SerializationError,
    UnknownProcessorError,
    WaitTimeout,
)
from queue_system.ops.admin import QueueAdmin
from queue_system.producer.aio import AsyncQueueManager
from queue_system.producer.sync import QueueManager
from queue_system.worker.loops import QueueWorker

__all__ = [
    "AsyncQueueManager",
    "ConfigurationError",
    "DecodeError",
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
    "QueueManager",
    "QueueRetryConfig",
    "QueueSystemError",
    "QueueUnavailableError",
    "QueueWorker",
    "SerializationError",
    "UnknownProcessorError",
    "WaitTimeout",
    "current_job",
]
