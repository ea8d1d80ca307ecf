"""The reference's resilience decorators under their documented import path.

``from utils import with_timeout, circuit_breaker, retry_with_backoff, try_catch`` works as the
reference shows. The code lives in :mod:`queue_system.resilience`; queue_system itself never
imports the top-level name ``utils``, so an application with its own ``utils`` module can still
import queue_system.
"""

from queue_system.resilience import (
    CircuitBreakerOpenError,
    breakers,
    circuit_breaker,
    retry_with_backoff,
    try_catch,
    with_timeout,
)

__all__ = [
    "CircuitBreakerOpenError",
    "breakers",
    "circuit_breaker",
    "retry_with_backoff",
    "try_catch",
    "with_timeout",
]
