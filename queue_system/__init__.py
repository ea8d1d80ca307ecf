"""queue_system: a Redis-backed priority job queue that never loses an item.

Public API::

    from queue_system import QueueConfig, QueueManager, QueueWorker, QueueRetryConfig
"""

from .aio_manager import AsyncQueueManager
from .config import QueueConfig
from .errors import (
    ConfigurationError,
    DecodeError,
    ProcessingError,
    QueueSystemError,
    QueueUnavailableError,
    SerializationError,
    UnknownProcessorError,
)
from .manager import QueueManager
from .retry import QueueRetryConfig
from .worker import QueueWorker

__all__ = [
    "AsyncQueueManager",
    "ConfigurationError",
    "DecodeError",
    "ProcessingError",
    "QueueConfig",
    "QueueManager",
    "QueueRetryConfig",
    "QueueSystemError",
    "QueueUnavailableError",
    "QueueWorker",
    "SerializationError",
    "UnknownProcessorError",
]
