"""QueueConfig: the one object an application builds and hands to managers and workers.

Example::

    config = QueueConfig(redis_url="redis://localhost:6379/0")
    config.register_callback(send_email)          # allow a worker to run it by name
    queue = QueueManager(config)
    worker = QueueWorker(config, max_workers=2)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis
import redis.asyncio

from queue_system.core.checks import require_positive, validate_queue_name
from queue_system.core.clock import Clock, SystemClock
from queue_system.core.envelope import DEFAULT_MAX_PAYLOAD_BYTES
from queue_system.core.registry import CallableRegistry, callback_key
from queue_system.core.types import MetricsSnapshot
from queue_system.engine import connection
from queue_system.engine.guard import RedisGuard
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import run_sync
from queue_system.engine.scripts import Scripts
from queue_system.errors import ConfigurationError
from queue_system.metrics.local import Metrics
from queue_system.metrics.shared import read_metrics

DEFAULT_BACKUP_TTL_S = 86400 * 7  # TTL of dead letters, dedup keys and counters: 7 days
DEFAULT_LEASE_TIMEOUT_S = 30.0  # a claimed item returns to its queue this long after its
#                                 worker stops renewing the lease (renewed every third of it)
DEFAULT_MAX_DELIVERIES = 3  # lease expiries before an item is treated as a crash loop
DEFAULT_DEAD_LETTER_CAP = 100_000  # newest records kept in failures / system_errors each
DEFAULT_MAX_QUEUES = 1_000  # distinct queue names a namespace may hold
DEFAULT_RESULT_TTL_S = 86400  # how long a finished operation's status and result are kept
NOTIFY_CAP = 64  # wake-up tokens kept for idle workers


class QueueConfig:
    """Redis connection, key naming, callable registry, delivery policy and metrics.

    Args:
        redis_client: a ``redis.Redis`` to use; its settings are copied for asyncio use.
        redis_url: used when no client is given; default ``$REDIS_URL``, else
            ``redis://localhost:6379/0``. ``rediss://`` (TLS) and passwords work.
        queue_prefix: namespace of every key (``queue:high:<name>``, ``queue:failures``...).
        backup_ttl: seconds dead letters, dedup keys and counters are kept.
        logger: where the library logs; default ``logging.getLogger("queue_system")``.
        connection_timeout: seconds to connect or wait for any Redis reply.
        max_connection_retries: reconnect attempts on a dropped connection.
        allowed_modules: module prefixes whose functions a worker may import by name.
        max_payload_bytes: largest encoded item accepted by ``enqueue``.
        lease_timeout: seconds a claimed item stays leased without renewal.
        max_deliveries: lease expiries after which an item goes to ``system_errors``.
        dead_letter_cap: records kept in each of ``failures`` and ``system_errors``.
        max_queues: distinct queue names allowed in this namespace.
        result_ttl: seconds a completed operation's status and result are kept.
        queue_result_ttls: ``result_ttl`` overrides per queue name.
        clock: time source (tests inject one; default wall/monotonic clock).
    """

    def __init__(
        self,
        redis_client: redis.Redis | None = None,
        redis_url: str | None = None,
        queue_prefix: str = "queue:",
        backup_ttl: int = DEFAULT_BACKUP_TTL_S,
        logger: logging.Logger | None = None,
        connection_timeout: float = 5.0,
        max_connection_retries: int = 3,
        *,
        allowed_modules: Iterable[str] = (),
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT_S,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        dead_letter_cap: int = DEFAULT_DEAD_LETTER_CAP,
        max_queues: int = DEFAULT_MAX_QUEUES,
        result_ttl: int = DEFAULT_RESULT_TTL_S,
        queue_result_ttls: Mapping[str, int] | None = None,
        clock: Clock | None = None,
    ) -> None:
        require_positive("backup_ttl", backup_ttl)
        require_positive("connection_timeout", connection_timeout)
        require_positive("lease_timeout", lease_timeout)
        require_positive("max_payload_bytes", max_payload_bytes)
        require_positive("max_deliveries", max_deliveries)
        require_positive("dead_letter_cap", dead_letter_cap)
        require_positive("max_queues", max_queues)
        require_positive("result_ttl", result_ttl)
        for ttl in (queue_result_ttls or {}).values():
            require_positive("queue_result_ttls[]", ttl)
        if max_connection_retries < 0:
            raise ValueError("max_connection_retries must be >= 0")
        if allowed_modules and isinstance(allowed_modules, str):
            raise TypeError("allowed_modules must be a list of module prefixes, not a str")
        self.keys = KeySpace(queue_prefix)
        self.queue_prefix = queue_prefix
        self.backup_ttl = int(backup_ttl)
        self.logger = logger or logging.getLogger("queue_system")
        self.connection_timeout = float(connection_timeout)
        self.max_connection_retries = int(max_connection_retries)
        self.max_payload_bytes = int(max_payload_bytes)
        self.lease_timeout = float(lease_timeout)
        self.max_deliveries = int(max_deliveries)
        self.dead_letter_cap = int(dead_letter_cap)
        self.max_queues = int(max_queues)
        self.result_ttl = int(result_ttl)
        self.queue_result_ttls = {
            validate_queue_name(q): int(t) for q, t in (queue_result_ttls or {}).items()
        }
        self.clock: Clock = clock or SystemClock()
        self.registry = CallableRegistry(allowed_modules)
        self.metrics = Metrics(logger=logging.getLogger("queue_system.metrics"))
        self.redis_url = redis_url if redis_client is None else None
        self.redis_client = self._sync_client(redis_client, redis_url)
        self._registered_scripts: Scripts | None = None
        self.guard = RedisGuard(
            connection.server_label(self.redis_client),
            max_connection_retries=self.max_connection_retries,
            connection_timeout=self.connection_timeout,
        )

    def _sync_client(self, client: redis.Redis | None, url: str | None) -> redis.Redis:
        if client is not None:
            if not isinstance(client, redis.Redis):
                raise TypeError("redis_client must be a redis.Redis (sync) client")
            if connection.uses_bytes(client):
                return client
            return connection.sync_client_like(client, self.max_connection_retries)
        self.redis_url = url or connection.default_url()
        try:
            return connection.sync_client_from_url(
                self.redis_url, self.connection_timeout, self.max_connection_retries
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid redis_url {connection.redact_url(self.redis_url)}: {exc}"
            ) from exc

    def result_ttl_for(self, queue_name: str) -> int:
        """Seconds a completed operation of ``queue_name`` keeps its status and result."""
        return self.queue_result_ttls.get(queue_name, self.result_ttl)

    def make_async_client(self) -> redis.asyncio.Redis:
        """A new asyncio client with the same settings (bind it to one event loop only)."""
        return connection.async_client_like(self.redis_client, self.max_connection_retries)

    def get_queue_key(self, queue_name: str, priority: str = "normal") -> str:
        """The Redis list holding ``queue_name`` at ``priority``, e.g. ``queue:high:emails``."""
        return self.keys.queue(queue_name, priority)

    def get_registry_key(self) -> str:
        """The Redis set of known queue names."""
        return self.keys.registry

    def get_callback_key(self, callback_name: str, callback_module: str | None = None) -> str:
        """The registry name of a callback (``"module:name"``, or ``name`` alone)."""
        return callback_key(callback_name, callback_module)

    def register_callback(
        self, callback: Callable[..., Any], name: str | None = None, module: str | None = None
    ) -> str:
        """Allow ``callback`` (a processor or callback) to run by name; returns the name."""
        return self.registry.register(callback, name, module)

    def update_metric(self, metric_name: str, value: Any = 1, force_log: bool = False) -> None:
        """Update a process-local metric; logs it when the event-driven policy says so."""
        self.metrics.update(metric_name, value, force_log)

    def get_metrics(self) -> MetricsSnapshot:
        """Totals shared by every process (from Redis) plus ``local``, this process's view."""
        scripts = self._scripts()
        result = self.guard.call(
            lambda: run_sync(self.redis_client, scripts, read_metrics(self.keys))
        )
        result["local"] = self.metrics.snapshot()
        return result

    def _scripts(self) -> Scripts:
        if self._registered_scripts is None:
            self._registered_scripts = Scripts.register(self.redis_client)
        return self._registered_scripts

    def __repr__(self) -> str:
        where = connection.redact_url(self.redis_url) if self.redis_url else "<client>"
        return f"QueueConfig(redis={where!r}, queue_prefix={self.queue_prefix!r})"
