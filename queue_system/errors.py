"""Every error queue_system raises on purpose, under one root.

::

    QueueSystemError
    ├── ConfigurationError          bad settings, no server binary, unknown options
    ├── QueueUnavailableError       Redis cannot be reached (down, frozen, breaker open)
    ├── WorkerLoopError             a worker's background loop failed and could not resume
    ├── SerializationError          an entity cannot be encoded as JSON or is too large
    │   └── DecodeError             an item read back from Redis is not a valid envelope
    ├── ProcessingError             an item cannot be run
    │   └── UnknownProcessorError   a name is neither registered nor allow-listed
    ├── NoJobContextError           current_job() outside a processor
    └── OperationError              wait_for: the operation did not complete (.operation)
        ├── OperationNotFound       no such operation (unknown id, or its record expired)
        ├── OperationFailed         it ended failed or error
        ├── OperationCancelled      it was cancelled
        ├── OperationExpired        it expired before it ran
        └── WaitTimeout             it did not end within the timeout

Bad arguments to public methods raise ``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations

from typing import Any


class QueueSystemError(Exception):
    """Root of every error raised on purpose by queue_system."""


class ConfigurationError(QueueSystemError):
    """Raised when settings are invalid or a needed resource (server binary) is missing."""


class QueueUnavailableError(QueueSystemError):
    """Raised when Redis cannot be reached in time, or its circuit breaker is open."""


class WorkerLoopError(QueueSystemError):
    """Raised by ``QueueWorker.run()`` when a background loop kept failing (the worker stopped)."""


class SerializationError(QueueSystemError, ValueError):
    """Raised when an entity cannot be encoded as JSON or exceeds the payload limit."""


class DecodeError(SerializationError):
    """Raised when bytes read from Redis are not a valid envelope; keeps the raw bytes."""

    def __init__(self, message: str, raw: bytes) -> None:
        super().__init__(message)
        self.raw = raw


class ProcessingError(QueueSystemError):
    """Raised when a claimed item cannot be run at all (not a failure of the processor)."""


class UnknownProcessorError(ProcessingError):
    """Raised when a processor or callback name is neither registered nor allow-listed."""


class NoJobContextError(QueueSystemError, RuntimeError):
    """Raised by ``current_job()`` outside a processor run by a worker."""


class OperationError(QueueSystemError):
    """Raised by ``wait_for`` when an operation did not complete; ``operation`` is its
    status record (``get_operation``'s dict, None when unknown)."""

    def __init__(self, message: str, operation: Any = None) -> None:
        super().__init__(message)
        self.operation = operation


class OperationNotFound(OperationError, LookupError):
    """Raised by ``wait_for`` when no operation has that id (never enqueued, or expired)."""


class OperationFailed(OperationError):
    """Raised by ``wait_for`` when the operation ended ``failed`` or ``error``."""


class OperationCancelled(OperationError):
    """Raised by ``wait_for`` when the operation was cancelled."""


class OperationExpired(OperationError):
    """Raised by ``wait_for`` when the operation expired before it ran."""


class WaitTimeout(OperationError, TimeoutError):
    """Raised by ``wait_for`` when the operation did not end within the timeout."""
