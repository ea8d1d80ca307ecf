"""queue_system: a Redis-backed priority job queue that never loses an item.

Public API::

    from queue_system import QueueConfig, QueueManager, QueueWorker, QueueRetryConfig

Operators also get :class:`QueueAdmin` (health, dead letters) and the error classes;
processors may raise :class:`NonRetryableError` or :class:`RetryAfter`; :class:`Middleware`
is the base of hook objects (``config.add_middleware``). The
typed shapes of what the API returns live in :mod:`queue_system.core.types`.
"""

from queue_system.config import QueueConfig
from queue_system.core.hooks import Middleware
from queue_system.core.job_context import JobContext, current_job
from queue_system.core.limits import QueueLimits
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.errors import (
    ConfigurationError,
    DecodeError,
    NoJobContextError,
    NonRetryableError,
    OperationCancelled,
    OperationError,
    OperationExpired,
    OperationFailed,
    OperationNotFound,
    ProcessingError,
    QueueSystemError,
    QueueUnavailableError,
    ReplicationTimeoutError,
    RetryAfter,
    SerializationError,
    UnknownProcessorError,
    WaitTimeout,
)
from queue_system.ops.admin import QueueAdmin
from queue_system.producer.aio import AsyncQueueManager
from queue_system.producer.sync import QueueManager
from queue_system.worker.loops import QueueWorker
from queue_system.worker.supervisor import run_workers

__all__ = [
    "AsyncQueueManager",
    "ConfigurationError",
    "DecodeError",
    "JobContext",
    "Middleware",
    "NoJobContextError",
    "NonRetryableError",
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
    "WaitTimeout",
    "current_job",
    "run_workers",
]
