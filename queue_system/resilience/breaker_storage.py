"""The circuit breaker's storages: pybreaker's interface, with a failure count that forgets
failures older than the window, in memory or in Redis shared by processes (see
:mod:`queue_system.resilience.breaker`). Failure ages come from ``time.time()``."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pybreaker
from redis.exceptions import RedisError

if TYPE_CHECKING:
    import redis

storage_logger = logging.getLogger("queue_system.resilience.breaker.storage")


class WindowedMemoryStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's memory storage whose failure counter forgets failures older than the window."""

    def __init__(self, window_s: float) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._window_s = window_s
        self._failures: deque[float] = deque()
        self._failures_lock = threading.Lock()

    def increment_counter(self) -> None:
        with self._failures_lock:
            self._failures.append(time.time())

    def reset_counter(self) -> None:
        with self._failures_lock:
            self._failures.clear()

    def has_failures(self) -> bool:
        """Whether any failure is held (aged-out ones included until ``counter`` drops them);
        a lock-free read for :meth:`CircuitBreaker.is_quiet`."""
        return bool(self._failures)

    @property
    def counter(self) -> int:
        cutoff = time.time() - self._window_s
        with self._failures_lock:
            while self._failures and self._failures[0] < cutoff:
                self._failures.popleft()
            return len(self._failures)


class WindowedRedisStorage(pybreaker.CircuitBreakerStorage):
    """Breaker state in Redis, shared by every process that uses the breaker's name.

    Keys: ``<namespace>:pybreaker:state`` (the state name), ``:failures`` (a sorted set of
    failure times, trimmed to the window) and ``:opened_at`` (epoch seconds). Failure ages come
    from each process's clock, so hosts sharing a breaker need roughly synchronised clocks.
    As in pybreaker's own Redis storage, a Redis error is logged and the breaker acts closed
    with no failures counted. Nothing is read or written at construction, so an unreachable
    Redis when a function is decorated breaks no import.
    """

    def __init__(self, client: redis.Redis, namespace: str, window_s: float) -> None:
        super().__init__("redis")
        self._client = client
        self._key_prefix = f"{namespace}:pybreaker:"
        self._window_s = window_s

    def _key(self, field: str) -> str:
        return self._key_prefix + field

    @property
    def state(self) -> str:
        try:
            raw = self._client.get(self._key("state"))
        except RedisError:
            storage_logger.exception("RedisError: falling back to the closed state")
            return pybreaker.STATE_CLOSED
        if raw is None:
            return pybreaker.STATE_CLOSED
        # Either reply type: the client may be made with decode_responses=True.
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)

    @state.setter
    def state(self, state: str) -> None:
        try:
            self._client.set(self._key("state"), state)
        except RedisError:
            storage_logger.exception("RedisError")

    def increment_counter(self) -> None:
        now = time.time()
        key = self._key("failures")
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.zadd(key, {f"{now!r}:{uuid.uuid4().hex}": now})
            # Let Redis drop the key once every failure in it has aged out.
            pipe.expire(key, int(self._window_s) + 1)
            pipe.execute()
        except RedisError:
            storage_logger.exception("RedisError")

    def reset_counter(self) -> None:
        try:
            self._client.delete(self._key("failures"))
        except RedisError:
            storage_logger.exception("RedisError")

    @property
    def counter(self) -> int:
        key = self._key("failures")
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", f"({time.time() - self._window_s!r}")
            pipe.zcard(key)
            return int(pipe.execute()[1])
        except RedisError:
            storage_logger.exception("RedisError: assuming no failures")
            return 0

    # CircuitBreaker._finish closes the breaker on the first trial success, so pybreaker's
    # success counter (1.4 on) has nothing to count; these complete its storage interface.
    def increment_success_counter(self) -> None:
        pass

    def reset_success_counter(self) -> None:
        pass

    @property
    def success_counter(self) -> int:
        return 0

    @property
    def opened_at(self) -> datetime | None:
        try:
            raw = self._client.get(self._key("opened_at"))
        except RedisError:
            storage_logger.exception("RedisError")
            return None
        return None if raw is None else datetime.fromtimestamp(float(raw), tz=timezone.utc)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        try:
            self._client.set(self._key("opened_at"), repr(when.timestamp()))
        except RedisError:
            storage_logger.exception("RedisError")
