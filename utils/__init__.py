"""Resilience decorators: with_timeout, circuit_breaker, retry_with_backoff, try_catch.

Each works on ``def`` and ``async def`` functions and methods and keeps the wrapped function's
name, docstring and signature. This package never imports ``queue_system``.
"""

from utils.breaker import CircuitBreakerOpenError, breakers, circuit_breaker
from utils.retry import retry_with_backoff
from utils.timeout import with_timeout
from utils.try_catch import try_catch

__all__ = [
    "CircuitBreakerOpenError",
    "breakers",
    "circuit_breaker",
    "retry_with_backoff",
    "try_catch",
    "with_timeout",
]
