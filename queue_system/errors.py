"""Every error queue_system raises on purpose, under one root.

::

    QueueSystemError
    ├── ConfigurationError          bad settings, no server binary, unknown options
    ├── QueueUnavailableError       Redis cannot be reached (down, frozen, breaker open)
    │   └── ReplicationTimeoutError  stored on the master, but fewer than min_replicas had it
    ├── WorkerLoopError             a worker's background loop failed and could not resume
    ├── WorkerCrashLoopError        supervised worker processes kept dying
    ├── SerializationError          an entity cannot be encoded as JSON or is too large
    │   └── DecodeError             an item read back from Redis is not a valid envelope
    ├── ProcessingError             an item cannot be run
    │   └── UnknownProcessorError   a name is neither registered nor allow-listed
    ├── NonRetryableError           raised by a processor: this failure is final, no retry
    ├── RetryAfter                  raised by a processor: retry after the seconds it names
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


class ReplicationTimeoutError(QueueUnavailableError):
    """Raised by an enqueue with ``QueueConfig(min_replicas=N)`` when fewer than N replicas
    confirmed the write within ``replica_timeout``. The item *is* stored on the master (a
    failover now could lose it): enqueue again with the same ``operation_id`` to make sure."""

    def __init__(self, message: str, acknowledged: int) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged


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


class NonRetryableError(QueueSystemError):
    """Raised by a processor to fail its item at once: no retry, straight to ``failures``.

    Raise it directly, subclass it, or chain it (``raise NonRetryableError("bad input") from
    exc``); the attempt history records the rule ``"non_retryable"``.
    """


class RetryAfter(QueueSystemError):
    """Raised by a processor to be retried after ``seconds`` (e.g. an HTTP 429's Retry-After).

    The delay replaces the item's retry schedule for this retry only (no jitter); it still
    counts as a retry, so ``max_attempts`` and the retry ``timeout`` bound it. The attempt
    history records the rule ``"retry_after"``.

    Raises:
        ValueError: ``seconds`` is not a finite number >= 0.
    """

    def __init__(self, seconds: float, message: str = "") -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"RetryAfter seconds must be a number, got {seconds!r}")
        if not 0 <= seconds < float("inf"):
            raise ValueError(f"RetryAfter seconds must be finite and >= 0, got {seconds!r}")
        super().__init__(message or f"retry after {seconds}s")
        self.seconds = float(seconds)


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
