"""Builds the sync and asyncio Redis clients queue_system uses, and redacts URLs for display.

Both clients return bytes (items may not be UTF-8). redis-py's own ``Retry`` reconnects on
connection errors; timeouts are not retried here, so a frozen server fails fast instead of
multiplying ``connection_timeout``.
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
_COPIED_KWARGS = (
    "host", "port", "db", "username", "password", "path", "client_name",
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval",
    "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data",
    "ssl_check_hostname", "ssl_min_version", "ssl_ciphers",
)  # fmt: skip


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


def _retry(max_connection_retries: int) -> Retry:
    # One immediate reconnect (a pooled connection gone stale after a server restart); further
    # retries with backoff belong to the caller's guard (queue_system.guard).
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), min(max_connection_retries, 1))


def sync_client_from_url(
    url: str, connection_timeout: float, max_connection_retries: int
) -> redis.Redis:
    """A bytes-returning client for ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=connection_timeout,
        socket_connect_timeout=connection_timeout,
        retry=_retry(max_connection_retries),
        retry_on_error=[redis.ConnectionError],
        decode_responses=False,
    )


def connection_kwargs(client: redis.Redis) -> dict[str, Any]:
    """Settings to rebuild ``client`` elsewhere (another event loop, bytes responses)."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _COPIED_KWARGS}
    if issubclass(pool.connection_class, redis.SSLConnection):
        kwargs["ssl"] = True
    return kwargs


def uses_bytes(client: redis.Redis) -> bool:
    """True unless the client was built with ``decode_responses=True``."""
    return not client.connection_pool.connection_kwargs.get("decode_responses", False)


def sync_client_like(client: redis.Redis, max_connection_retries: int) -> redis.Redis:
    """A bytes-returning sync client with ``client``'s connection settings."""
    kwargs = connection_kwargs(client)
    if kwargs.pop("path", None) is not None:
        kwargs["unix_socket_path"] = client.connection_pool.connection_kwargs["path"]
    return redis.Redis(
        **kwargs, retry=_retry(max_connection_retries), retry_on_error=[redis.ConnectionError]
    )


def async_client_like(client: redis.Redis, max_connection_retries: int) -> redis.asyncio.Redis:
    """An asyncio client with ``client``'s connection settings, bound to no loop yet."""
    kwargs = connection_kwargs(client)
    if kwargs.pop("path", None) is not None:
        kwargs["unix_socket_path"] = client.connection_pool.connection_kwargs["path"]
    return redis.asyncio.Redis(
        **kwargs,
        retry=redis.asyncio.retry.Retry(
            ExponentialBackoff(cap=1.0, base=0.05), min(max_connection_retries, 1)
        ),
        retry_on_error=[redis.ConnectionError],
        decode_responses=False,
    )
