"""Builds the sync and asyncio Redis clients queue_system uses, and redacts URLs for display.

Both clients return bytes (items may not be UTF-8).

Retries: redis-py (v8) re-sends a command once after a dropped connection (``ConnectionError``,
which covers a reset after the server ran it); every queue_system script is safe to re-send,
so that retry is kept. Timeouts are *not* retried: redis-py's ``Retry`` retries
``TimeoutError`` by default, which made a frozen server cost twice ``connection_timeout`` per
call; our ``Retry`` objects name ``ConnectionError`` alone, so a frozen server costs one
``connection_timeout``. After a timeout the caller decides: a producer's guard does not retry
it either, and the worker backs off and re-sends the same call (same call id) once Redis
answers. A bytes-returning ``redis_client`` given to ``QueueConfig`` is used as it is, with
its own retry settings.
"""

from __future__ import annotations

import os
import re
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
_PASSWORD_IN_URL = re.compile(r"(//[^:/@]*:)[^@]*@")
_PASSWORD_IN_QUERY = re.compile(r"([?&]password=)[^&]*")
REDIS_URL_ENV_VAR = "REDIS_URL"

# Connection settings copied from a user's client to the asyncio twin (never the pool itself).
_SERVER_KWARGS = ("host", "port", "db", "username", "password", "path", "client_name")
_SOCKET_KWARGS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive")
_TLS_KWARGS = ("ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data")
_TLS_CHECK_KWARGS = ("ssl_check_hostname", "ssl_min_version", "ssl_ciphers")
_COPIED_KWARGS = frozenset(
    (*_SERVER_KWARGS, *_SOCKET_KWARGS, "health_check_interval", *_TLS_KWARGS, *_TLS_CHECK_KWARGS)
)


def default_url() -> str:
    """``$REDIS_URL``, else ``redis://localhost:6379/0``."""
    return os.environ.get(REDIS_URL_ENV_VAR) or DEFAULT_REDIS_URL


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and reprs)."""
    return _PASSWORD_IN_QUERY.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", url))


def server_label(client: redis.Redis) -> str:
    """``host:port/db`` (or ``socket-path/db``) of a client: names its circuit breaker."""
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return f"{where}/{kwargs.get('db', 0)}"


RETRIED_ERRORS = (redis.ConnectionError,)  # never redis.TimeoutError (see the module doc)


def _retry(max_connection_retries: int) -> Retry:
    # One immediate reconnect (a pooled connection gone stale after a server restart); further
    # retries with backoff belong to the caller (engine/guard.py, engine/outage.py).
    return Retry(
        ExponentialBackoff(cap=1.0, base=0.05),
        min(max_connection_retries, 1),
        supported_errors=RETRIED_ERRORS,
    )


def _async_retry(max_connection_retries: int) -> redis.asyncio.retry.Retry:
    return redis.asyncio.retry.Retry(
        ExponentialBackoff(cap=1.0, base=0.05),
        min(max_connection_retries, 1),
        supported_errors=RETRIED_ERRORS,
    )


def sync_client_from_url(
    url: str, connection_timeout: float, max_connection_retries: int
) -> redis.Redis:
    """A bytes-returning client for ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=connection_timeout,
        socket_connect_timeout=connection_timeout,
        retry=_retry(max_connection_retries),
        retry_on_error=list(RETRIED_ERRORS),
        decode_responses=False,
    )


def connection_kwargs(client: redis.Redis) -> dict[str, Any]:
    """Settings to rebuild ``client`` elsewhere (another event loop, bytes responses): where it
    connects, how it authenticates, its socket and TLS settings. A unix socket's path comes
    back as ``unix_socket_path``, the name the client constructors take."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _COPIED_KWARGS}
    if issubclass(pool.connection_class, redis.SSLConnection):
        kwargs["ssl"] = True
    if "path" in kwargs:
        kwargs["unix_socket_path"] = kwargs.pop("path")
    return kwargs


def uses_bytes(client: redis.Redis) -> bool:
    """True unless the client was built with ``decode_responses=True``."""
    return not client.connection_pool.connection_kwargs.get("decode_responses", False)


def sync_client_like(
    client: redis.Redis, max_connection_retries: int, **overrides: Any
) -> redis.Redis:
    """A bytes-returning sync client with ``client``'s connection settings (``overrides``
    replace some, e.g. ``socket_timeout``); ``max_connection_retries=0`` never retries."""
    kwargs = connection_kwargs(client) | overrides
    return redis.Redis(
        **kwargs,
        retry=_retry(max_connection_retries),
        retry_on_error=list(RETRIED_ERRORS),
        decode_responses=False,
    )


def async_client_like(
    client: redis.Redis, max_connection_retries: int, **overrides: Any
) -> redis.asyncio.Redis:
    """An asyncio client with ``client``'s connection settings, bound to no loop yet."""
    kwargs = connection_kwargs(client) | overrides
    return redis.asyncio.Redis(
        **kwargs,
        retry=_async_retry(max_connection_retries),
        retry_on_error=list(RETRIED_ERRORS),
        decode_responses=False,
    )
