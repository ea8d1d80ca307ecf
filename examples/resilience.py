"""The four resilience decorators on sync and async code; needs no Redis.

Run: python examples/resilience.py
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from utils import (
    CircuitBreakerOpenError,
    circuit_breaker,
    retry_with_backoff,
    try_catch,
    with_timeout,
)


class ServiceError(Exception):
    """This application's own error family."""


attempts = 0


@retry_with_backoff(max_retries=3, base_delay=0.05, exceptions=(ConnectionError,))
def flaky_fetch() -> str:
    """Fails twice with a transient error, then answers."""
    global attempts
    attempts += 1
    if attempts < 3:
        raise ConnectionError(f"connection reset (attempt {attempts})")
    return "payload"


@circuit_breaker(name="example_service", failure_threshold=2, recovery_timeout=0.3)
def call_service(healthy: bool) -> str:
    if not healthy:
        raise ConnectionError("service down")
    return "pong"


@with_timeout(default_timeout=0.1)
async def slow_async() -> None:
    await asyncio.sleep(10)  # cancelled at the deadline


finished = threading.Event()


@with_timeout(default_timeout=0.1)
def slow_sync() -> None:
    time.sleep(0.3)  # cannot be interrupted: finishes in its background thread
    finished.set()


@try_catch(reraise_as=ServiceError)
def parse_port(raw: str) -> int:
    return {"http": 80, "https": 443}[raw]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s %(name)s: %(message)s")

    print("retry_with_backoff:", flaky_fetch(), f"after {attempts} calls")

    for healthy in (False, False, True):
        try:
            call_service(healthy)
        except ConnectionError as exc:
            print("circuit_breaker: call failed:", exc)
        except CircuitBreakerOpenError as exc:
            print("circuit_breaker: rejected at once:", exc)
    time.sleep(0.35)  # the recovery timeout; then a trial call closes the breaker
    print("circuit_breaker: after recovery:", call_service(True))

    try:
        asyncio.run(slow_async())
    except TimeoutError as exc:
        print("with_timeout (async):", exc)
    try:
        slow_sync()
    except TimeoutError as exc:
        print("with_timeout (sync):", exc, "- the thread runs on")
    finished.wait(5)

    try:
        parse_port("gopher")
    except ServiceError as exc:
        print(f"try_catch: {type(exc).__name__}: {exc} (cause: {exc.__cause__!r})")


if __name__ == "__main__":
    main()
