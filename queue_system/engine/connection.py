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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import unquote

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from queue_system.core.types import ConfiguredTopology
from queue_system.errors import ConfigurationError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
_PASSWORD_IN_URL = re.compile(r"(//[^:/@]*:)[^@]*@")
_PASSWORD_IN_QUERY = re.compile(r"([?&]password=)[^&]*")
REDIS_URL_ENV_VAR = "REDIS_URL"
SENTINEL_SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379

# Connection settings copied from a user's client to the asyncio twin (never the pool itself).
_SERVER_KWARGS = ("host", "port", "db", "username", "password", "path", "client_name")
_SOCKET_KWARGS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive")
_TLS_KWARGS = ("ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data")
_TLS_CHECK_KWARGS = ("ssl_check_hostname", "ssl_min_version", "ssl_ciphers")
_COPIED_KWARGS = frozenset(
    (*_SERVER_KWARGS, *_SOCKET_KWARGS, "health_check_interval", *_TLS_KWARGS, *_TLS_CHECK_KWARGS)
)
# Pools and connections whose settings name the one server they reach (a subclass may not).
_DIRECT_POOLS = (redis.ConnectionPool, redis.BlockingConnectionPool)
_DIRECT_CONNECTIONS = (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)
_ASYNC_DIRECT_POOLS = (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)
_ASYNC_DIRECT_CONNECTIONS = (
    redis.asyncio.Connection,
    redis.asyncio.SSLConnection,
    redis.asyncio.UnixDomainSocketConnection,
)


def default_url() -> str:
    """``$REDIS_URL``, else ``redis://localhost:6379/0``."""
    return os.environ.get(REDIS_URL_ENV_VAR) or DEFAULT_REDIS_URL


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and reprs)."""
    return _PASSWORD_IN_QUERY.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", url))


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


@dataclass(frozen=True, kw_only=True)
class DirectTarget:
    """One server, named by its connection settings (host/port or unix socket, db, auth, TLS)."""

    kwargs: Mapping[str, Any]

    @property
    def label(self) -> str:
        where = self.kwargs.get("unix_socket_path") or (
            f"{self.kwargs.get('host', 'localhost')}:{self.kwargs.get('port', 6379)}"
        )
        return f"{where}/{self.kwargs.get('db', 0)}"


@dataclass(frozen=True, kw_only=True)
class SentinelTarget:
    """The master of ``service_name`` as the Sentinels at ``sentinels`` name it, looked up again
    on every new connection (so clients follow a failover); ``kwargs`` are the data servers'
    settings (db, auth, TLS, timeouts), ``sentinel_kwargs`` those for asking the Sentinels."""

    service_name: str
    sentinels: tuple[tuple[str, int], ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    sentinel_kwargs: Mapping[str, Any] = field(default_factory=dict)
    min_other_sentinels: int = 0

    @property
    def label(self) -> str:
        return f"sentinel:{self.service_name}/{self.kwargs.get('db', 0)}"


#: Where a client connects, known well enough to build more clients for the same server(s).
Target: TypeAlias = DirectTarget | SentinelTarget


def parse_sentinel_url(url: str, connection_timeout: float) -> SentinelTarget:
    """``redis+sentinel://[user:pass@]host[:port][,host[:port]...]/service_name[/db]``.

    The credentials are the data servers' (the Sentinels are asked without); a Sentinel's port
    defaults to 26379. Raises ValueError for anything else (query options are not accepted).
    """
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"not a {SENTINEL_SCHEME} URL")
    rest = url[len(SENTINEL_SCHEME) :]
    if "?" in rest or "#" in rest:
        raise ValueError("query options are not supported in redis+sentinel URLs")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    sentinels = tuple(_host_port(h) for h in hosts.split(","))
    parts = path.split("/")
    if not parts[0] or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("the path must be /service_name or /service_name/db")
    kwargs: dict[str, Any] = {
        "db": int(parts[1]) if len(parts) == 2 else 0,
        "socket_timeout": connection_timeout,
        "socket_connect_timeout": connection_timeout,
    }
    if userinfo:
        username, has_password, password = userinfo.partition(":")
        if username:
            kwargs["username"] = unquote(username)
        if has_password:
            kwargs["password"] = unquote(password)
    sentinel_kwargs = {
        "socket_timeout": connection_timeout,
        "socket_connect_timeout": connection_timeout,
    }
    return SentinelTarget(
        service_name=unquote(parts[0]),
        sentinels=sentinels,
        kwargs=kwargs,
        sentinel_kwargs=sentinel_kwargs,
    )


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"bad Sentinel address {text!r} (expected host:port)")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


def target_of(client: redis.Redis | redis.asyncio.Redis) -> Target | None:
    """Where ``client`` connects, when its pool says so for certain: a plain pool (host/port or
    unix socket) or a Sentinel master pool. None for anything else (a custom pool, a fake):
    its settings might not name the server it really reaches.

    Raises ConfigurationError for a Sentinel *replica* client (queues must write).
    """
    pool = client.connection_pool
    if isinstance(
        pool, (redis.sentinel.SentinelConnectionPool, redis.asyncio.sentinel.SentinelConnectionPool)
    ):
        if not pool.is_master:
            raise ConfigurationError(
                f"this client reaches a replica of {pool.service_name!r} (slave_for/replica_for):"
                " queue_system writes; pass a master_for(...) client"
            )
        manager = pool.sentinel_manager
        kwargs = _copied(pool.connection_kwargs)
        if issubclass(pool.connection_class, (redis.SSLConnection, redis.asyncio.SSLConnection)):
            kwargs["ssl"] = True
        return SentinelTarget(
            service_name=pool.service_name,
            sentinels=tuple(
                (
                    s.connection_pool.connection_kwargs["host"],
                    s.connection_pool.connection_kwargs["port"],
                )
                for s in manager.sentinels
            ),
            kwargs=kwargs,
            sentinel_kwargs=_copied(manager.sentinel_kwargs or {}),
            min_other_sentinels=manager.min_other_sentinels,
        )
    direct = (
        type(pool) in _DIRECT_POOLS and pool.connection_class in _DIRECT_CONNECTIONS
        if isinstance(client, redis.Redis)
        else type(pool) in _ASYNC_DIRECT_POOLS
        and pool.connection_class in _ASYNC_DIRECT_CONNECTIONS
    )
    if not direct:
        return None
    kwargs = _copied(pool.connection_kwargs)
    if issubclass(pool.connection_class, (redis.SSLConnection, redis.asyncio.SSLConnection)):
        kwargs["ssl"] = True
    if "path" in kwargs:
        kwargs["unix_socket_path"] = kwargs.pop("path")
    return DirectTarget(kwargs=kwargs)


def _copied(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in _COPIED_KWARGS}


def uses_bytes(client: redis.Redis) -> bool:
    """True unless the client was built with ``decode_responses=True``."""
    return not client.connection_pool.connection_kwargs.get("decode_responses", False)


def server_label(client: redis.Redis, target: Target | None) -> str:
    """``host:port/db``, ``socket-path/db`` or ``sentinel:<service>/db``: names the circuit
    breaker of a server."""
    if target is not None:
        return target.label
    return f"<{type(client.connection_pool).__name__}>"


def sync_client(target: Target, max_connection_retries: int, **overrides: Any) -> redis.Redis:
    """A bytes-returning sync client for ``target`` (``overrides`` replace some settings, e.g.
    ``socket_timeout``); ``max_connection_retries=0`` never retries."""
    settings = dict(target.kwargs) | overrides
    settings.update(
        retry=_retry(max_connection_retries),
        retry_on_error=list(RETRIED_ERRORS),
        decode_responses=False,
    )
    if isinstance(target, DirectTarget):
        return redis.Redis(**settings)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        min_other_sentinels=target.min_other_sentinels,
        sentinel_kwargs=_sentinel_kwargs(target, overrides),
    )
    tls = settings.pop("ssl", False)
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.service_name,
        connection_pool_class=_SentinelPool,
        connection_class=_SentinelSSLConnection if tls else _SentinelConnection,
        **settings,
    )
    return master


def async_client(
    target: Target, max_connection_retries: int, **overrides: Any
) -> redis.asyncio.Redis:
    """An asyncio client for ``target``, bound to no loop yet (bind it to one loop only)."""
    settings = dict(target.kwargs) | overrides
    settings.update(
        retry=_async_retry(max_connection_retries),
        retry_on_error=list(RETRIED_ERRORS),
        decode_responses=False,
    )
    if isinstance(target, DirectTarget):
        return redis.asyncio.Redis(**settings)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        min_other_sentinels=target.min_other_sentinels,
        sentinel_kwargs=_sentinel_kwargs(target, overrides),
    )
    master: redis.asyncio.Redis = sentinel.master_for(
        target.service_name,
        redis_class=redis.asyncio.Redis,
        connection_pool_class=_AsyncSentinelPool,
        **settings,
    )
    return master


def _sentinel_kwargs(target: SentinelTarget, overrides: Mapping[str, Any]) -> dict[str, Any]:
    # A client that must answer in bounded time (health, lease renewal) asks the Sentinels
    # in the same bound: the master lookup is part of every new connection.
    timeouts = {k: v for k, v in overrides.items() if k.startswith("socket_")}
    return dict(target.sentinel_kwargs) | timeouts


class _SentinelConnection(redis.sentinel.SentinelManagedConnection):
    """A Sentinel-managed connection that, like a plain one, is dropped when reading a reply
    fails. redis-py's keeps it (``disconnect_on_error=False``): after a timeout that is not
    retried (ours never are) the late reply would answer the next command sent on it."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("disconnect_on_error", True)
        return super().read_response(*args, **kwargs)


class _SentinelSSLConnection(_SentinelConnection, redis.sentinel.SentinelManagedSSLConnection):
    """:class:`_SentinelConnection` over TLS."""


class _SentinelPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel master pool that also closes its connections to the Sentinels when closed
    (the pool made for one queue_system client owns its own ``Sentinel``)."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections:  # a full close, not the idle sweep after a failover
            for sentinel in self.sentinel_manager.sentinels:
                sentinel.close()


class _AsyncSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool):
    """The asyncio twin of :class:`_SentinelPool`."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def topology_of(target: Target | None) -> ConfiguredTopology:
    """What the configuration says about the deployment, for health reports."""
    if isinstance(target, SentinelTarget):
        return {
            "mode": "sentinel",
            "service_name": target.service_name,
            "sentinels": [f"{host}:{port}" for host, port in target.sentinels],
        }
    if isinstance(target, DirectTarget):
        return {"mode": "standalone", "service_name": None, "sentinels": []}
    return {"mode": "unknown", "service_name": None, "sentinels": []}
