"""Every error queue_system raises on purpose, under one root.

::

    QueueSystemError
    ├── ConfigurationError          bad settings, no server binary, unknown options
    ├── QueueUnavailableError       Redis cannot be reached (down, frozen, breaker open)
    ├── WorkerLoopError             a worker's background loop failed and could not resume
    ├── WorkerCrashLoopError        supervised worker processes kept dying
    ├── SerializationError          an entity cannot be encoded as JSON or is too large
    │   └── DecodeError             an item read back from Redis is not a valid envelope
    └── ProcessingError             an item cannot be run
        └── UnknownProcessorError   a name is neither registered nor allow-listed

Bad arguments to public methods raise ``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations


class QueueSystemError(Exception):
    """Root of every error raised on purpose by queue_system."""


class ConfigurationError(QueueSystemError):
    """Raised when settings are invalid or a needed resource (server binary) is missing."""


class QueueUnavailableError(QueueSystemError):
    """Raised when Redis cannot be reached in time, or its circuit breaker is open."""


class WorkerLoopError(QueueSystemError):
    """Raised by ``QueueWorker.run()`` when a background loop kept failing (the worker stopped)."""


class WorkerCrashLoopError(QueueSystemError):
    """Raised by ``run_workers()`` when its worker processes kept dying (it stopped them)."""


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
