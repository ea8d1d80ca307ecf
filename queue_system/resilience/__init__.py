"""Resilience decorators: with_timeout, circuit_breaker, retry_with_backoff, try_catch.

Thin adapters on pybreaker and tenacity. Each works on ``def`` and ``async def`` functions and
methods and keeps the wrapped function's name, docstring and signature. The engine uses them
for its own Redis calls; applications reach them as ``from utils import ...`` (the reference's
names), a re-export of this package.
"""

from queue_system.resilience.breaker import CircuitBreakerOpenError, breakers, circuit_breaker
from queue_system.resilience.retry import retry_with_backoff
from queue_system.resilience.timeout import with_timeout
from queue_system.resilience.try_catch import try_catch

__all__ = [
    "CircuitBreakerOpenError",
    "breakers",
    "circuit_breaker",
    "retry_with_backoff",
    "try_catch",
    "with_timeout",
]
