"""QueueConfig: the one object an application builds and hands to managers and workers.

Example::

    config = QueueConfig(redis_url="redis://localhost:6379/0")

    @config.processor                             # a worker importing this module can run it
    async def send_email(data): ...

    queue = QueueManager(config)
    worker = QueueWorker(config, max_workers=2)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

import redis
import redis.asyncio
import redis.cluster
from redis.commands.core import AsyncScript, Script

from queue_system.core.checks import (
    require_positive,
    validate_new_queue_name,
    validate_priority,
    validate_queue_name,
)
from queue_system.core.clock import Clock, SystemClock
from queue_system.core.envelope import DEFAULT_MAX_PAYLOAD_BYTES, dumps, entity_object
from queue_system.core.hooks import HOOK_NAMES, HookChain
from queue_system.core.limits import QueueLimits
from queue_system.core.registry import CallableRegistry, callback_key
from queue_system.core.schedule import CatchUp, CronSpec
from queue_system.core.types import CallableRef, ConfiguredTopology, MetricsSnapshot
from queue_system.engine import connection
from queue_system.engine.guard import RedisGuard
from queue_system.engine.keys import KeySpace
from queue_system.engine.plans import run_sync
from queue_system.engine.replication import Replication, replicated
from queue_system.engine.scripts import Scripts
from queue_system.errors import ConfigurationError, ReplicationTimeoutError
from queue_system.metrics.local import Metrics
from queue_system.metrics.shared import read_metrics, with_local

DEFAULT_BACKUP_TTL_S = 86400 * 7  # TTL of dead letters, dedup keys and counters: 7 days
DEFAULT_LEASE_TIMEOUT_S = 30.0  # a claimed item returns to its queue this long after its
#                                 worker stops renewing the lease (renewed every third of it)
DEFAULT_MAX_DELIVERIES = 3  # lease expiries before an item is treated as a crash loop
DEFAULT_DEAD_LETTER_CAP = 100_000  # newest records kept in failures / system_errors each
DEFAULT_MAX_QUEUES = 1_000  # distinct queue names a namespace may hold
DEFAULT_RESULT_TTL_S = 86400  # how long a finished operation's status and result are kept
DEFAULT_MAX_RESULT_BYTES = 64 * 1024  # largest encoded result kept in a status record
DEFAULT_UNKNOWN_PROCESSOR_TTL_S = 3600.0  # how long an item waits for a worker that knows its
#                                           processor (deploy skew) before system_errors
DEFAULT_REPLICA_TIMEOUT_S = 1.0  # how long an enqueue or ack waits for min_replicas replicas
NOTIFY_CAP = 64  # wake-up tokens kept for idle workers

F = TypeVar("F", bound=Callable[..., Any])
SCHEDULE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")  # it is part of operation ids


class QueueConfig:
    """Redis connection, key naming, callable registry, delivery policy and metrics.

    Args:
        redis_client: a ``redis.Redis`` to use, e.g. ``Sentinel(...).master_for(name)``. The
            asyncio clients (workers, ``AsyncQueueManager``) are built for the same server(s)
            when its pool says where they are (a plain or a Sentinel pool); for any other pool
            pass ``async_client_factory`` too.
        redis_url: used when no client is given; default ``$REDIS_URL``, else
            ``redis://localhost:6379/0``. ``rediss://`` (TLS), ``unix://`` and passwords work,
            and ``redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]``.
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
        max_result_bytes: largest result (UTF-8 JSON) kept in a status record; a larger one
            is kept as ``{"truncated": true, "size": <bytes>}`` (``on_success`` gets it whole).
        keep_results: False keeps no results at all (status ``completed``, result ``None``).
        queue_keep_results: ``keep_results`` overrides per queue name.
        unknown_processor_ttl: seconds an item whose processor or callback a worker does not
            know waits for one that does (deploy skew), counted from the first time a worker
            saw it unknown; then it goes to ``system_errors``. 0 sends it there at once.
        clock: time source (tests inject one; default wall/monotonic clock).
        async_client_factory: called with no arguments whenever an event loop needs its own
            asyncio client (a worker, its lease-renewal thread, an ``AsyncQueueManager``);
            must return a new ``redis.asyncio.Redis`` for the same server as the sync client,
            which the caller closes. Needs ``redis_client`` or ``redis_url`` for sync use.
        min_replicas: 0 (default) or the number of replicas that must have an enqueue or an
            ack before it returns (``WAIT``); see the README's "Running on Sentinel and
            Cluster" for what this guarantees.
        replica_timeout: seconds to wait for ``min_replicas`` replicas. Then an enqueue raises
            ``ReplicationTimeoutError`` (the item is stored on the master); an ack is logged
            and counted (``replication_timeouts``) and stays done.
        middleware: objects with hook methods (:mod:`queue_system.core.hooks`); more can be
            added with :meth:`add_middleware`.
        limits: per queue name, a :class:`~queue_system.core.limits.QueueLimits`
            (``max_concurrency``, ``rate_limit``) enforced across every worker. Workers write
            them to Redis when they start, unless ``queue-system limits set`` set that queue's
            limits at runtime: the runtime value wins until ``limits clear``.
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
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        keep_results: bool = True,
        queue_keep_results: Mapping[str, bool] | None = None,
        unknown_processor_ttl: float = DEFAULT_UNKNOWN_PROCESSOR_TTL_S,
        clock: Clock | None = None,
        async_client_factory: Callable[[], redis.asyncio.Redis] | None = None,
        min_replicas: int = 0,
        replica_timeout: float = DEFAULT_REPLICA_TIMEOUT_S,
        middleware: Sequence[object] = (),
        limits: Mapping[str, QueueLimits] | None = None,
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
        if isinstance(max_result_bytes, bool) or not isinstance(max_result_bytes, int):
            raise ValueError(f"max_result_bytes must be an int > 0, got {max_result_bytes!r}")
        require_positive("max_result_bytes", max_result_bytes)
        if (
            isinstance(unknown_processor_ttl, bool)
            or not isinstance(unknown_processor_ttl, (int, float))
            or not math.isfinite(unknown_processor_ttl)
            or unknown_processor_ttl < 0
        ):
            raise ValueError(
                f"unknown_processor_ttl must be a number of seconds >= 0, "
                f"got {unknown_processor_ttl!r}"
            )
        if max_connection_retries < 0:
            raise ValueError("max_connection_retries must be >= 0")
        if isinstance(min_replicas, bool) or not isinstance(min_replicas, int) or min_replicas < 0:
            raise ValueError(f"min_replicas must be an int >= 0, got {min_replicas!r}")
        require_positive("replica_timeout", replica_timeout)
        if min_replicas and replica_timeout >= connection_timeout:
            # WAIT must answer before the socket gives up, or the reply is lost mid-wait.
            raise ValueError(
                f"replica_timeout ({replica_timeout}s) must be shorter than connection_timeout "
                f"({connection_timeout}s)"
            )
        if async_client_factory is not None:
            if not callable(async_client_factory):
                raise TypeError("async_client_factory must be a callable returning a client")
            if redis_client is None and redis_url is None:
                raise ConfigurationError(
                    "async_client_factory needs redis_client= or redis_url= for the same "
                    "server too (producers, health, admin and the CLI use a sync client)"
                )
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
        self.max_result_bytes = max_result_bytes
        self.keep_results = _flag("keep_results", keep_results)
        self.queue_keep_results = _flags_by_queue(queue_keep_results)
        self.unknown_processor_ttl = float(unknown_processor_ttl)
        self.clock: Clock = clock or SystemClock()
        self.limits = _limits_by_queue(limits)
        self.registry = CallableRegistry(allowed_modules)
        self.middleware: list[object] = []
        self._hooks: HookChain | None = None
        for obj in middleware:
            self.add_middleware(obj)
        self.schedules: dict[str, CronSpec] = {}  # declared by cron(); run by every worker
        self.metrics = Metrics(logger=logging.getLogger("queue_system.metrics"))
        self.min_replicas = min_replicas
        self.replica_timeout = float(replica_timeout)
        self._async_client_factory = async_client_factory
        self.redis_url = redis_url if redis_client is None else None
        self.target: connection.Target | None = None  # where redis_client connects, if known
        self.redis_client = self._sync_client(redis_client, redis_url)
        self._registered_scripts: Scripts[Script] | None = None
        self.guard = RedisGuard(
            connection.server_label(self.redis_client, self.target),
            max_connection_retries=self.max_connection_retries,
            connection_timeout=self.connection_timeout,
        )

    def _sync_client(self, client: redis.Redis | None, url: str | None) -> redis.Redis:
        if client is not None:
            if _is_cluster(client):
                raise ConfigurationError(_CLUSTER_UNSUPPORTED)
            if not isinstance(client, redis.Redis):
                raise TypeError(
                    "redis_client must be a redis.Redis (sync) client; for asyncio clients "
                    "pass async_client_factory="
                )
            self.target = connection.target_of(client)
            if connection.uses_bytes(client):
                return client
            if self.target is None:
                raise ConfigurationError(
                    "redis_client decodes responses (decode_responses=True) and its connection "
                    f"pool ({type(client.connection_pool).__name__}) does not say which server "
                    "it reaches, so no bytes-returning twin can be built: pass a client made "
                    "with decode_responses=False"
                )
            return connection.sync_client(self.target, self.max_connection_retries)
        self.redis_url = url or connection.default_url()
        try:
            if self.redis_url.startswith(connection.SENTINEL_SCHEME):
                self.target = connection.parse_sentinel_url(self.redis_url, self.connection_timeout)
                return connection.sync_client(self.target, self.max_connection_retries)
            made = connection.sync_client_from_url(
                self.redis_url, self.connection_timeout, self.max_connection_retries
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid redis_url {connection.redact_url(self.redis_url)}: {exc}"
            ) from exc
        self.target = connection.target_of(made)
        return made

    def result_ttl_for(self, queue_name: str) -> int:
        """Seconds a completed operation of ``queue_name`` keeps its status and result."""
        return self.queue_result_ttls.get(queue_name, self.result_ttl)

    def keep_results_for(self, queue_name: str) -> bool:
        """Whether a completed operation of ``queue_name`` keeps its result."""
        return self.queue_keep_results.get(queue_name, self.keep_results)

    def make_async_client(self, socket_timeout: float | None = None) -> redis.asyncio.Redis:
        """A new asyncio client for the same server (bind it to one event loop only; the
        caller closes it). ``socket_timeout`` (seconds) replaces the reply timeout when the
        client is built here; a client from ``async_client_factory`` keeps its own settings.

        Raises ConfigurationError when no asyncio client can be made for the real server."""
        if self._async_client_factory is not None:
            made = self._async_client_factory()
            if not isinstance(made, redis.asyncio.Redis):
                raise TypeError(
                    f"async_client_factory must return a redis.asyncio.Redis, got {made!r}"
                )
            return made
        if self.target is None:
            raise ConfigurationError(
                "cannot make an asyncio client for workers / AsyncQueueManager: redis_client's "
                f"connection pool ({type(self.redis_client.connection_pool).__name__}) does "
                "not say which server it reaches, and a client rebuilt from its settings could "
                "reach another one. Pass QueueConfig(async_client_factory=...) returning a new "
                "redis.asyncio.Redis for the same server, or use redis_url="
            )
        overrides = {} if socket_timeout is None else {"socket_timeout": socket_timeout}
        return connection.async_client(self.target, self.max_connection_retries, **overrides)

    def make_sync_client(self, **overrides: Any) -> redis.Redis | None:
        """A new sync client for the same server with some settings replaced (e.g. timeouts,
        ``max_connection_retries``), or None when the server is not known (then use
        ``redis_client`` as it is)."""
        if self.target is None:
            return None
        retries = overrides.pop("max_connection_retries", self.max_connection_retries)
        return connection.sync_client(self.target, retries, **overrides)

    @overload
    def durable(self, scripts: Scripts[Script]) -> Scripts[Script]: ...

    @overload
    def durable(self, scripts: Scripts[AsyncScript]) -> Scripts[AsyncScript]: ...

    def durable(self, scripts: Scripts[Any]) -> Scripts[Any]:
        """``scripts`` whose enqueue and ack wait for ``min_replicas`` replicas (``WAIT``);
        the same object when ``min_replicas`` is 0."""
        if self.min_replicas == 0:
            return scripts
        return replicated(
            scripts,
            Replication(
                min_replicas=self.min_replicas,
                timeout_s=self.replica_timeout,
                on_short={
                    "enqueue": self._enqueue_short,
                    "ack": self._ack_short,
                    "enqueue_dependent": self._enqueue_short,  # depends_on: an enqueue too
                },
            ),
        )

    def _enqueue_short(self, acked: int) -> None:
        self.metrics.update("replication_timeouts", kind="counter", force_log=True)
        raise ReplicationTimeoutError(
            f"enqueue stored on the master but only {acked} of min_replicas="
            f"{self.min_replicas} replicas confirmed it within {self.replica_timeout}s; "
            "enqueue again with the same operation_id to make sure it is kept",
            acked,
        )

    def _ack_short(self, acked: int) -> None:
        # The item is done on the master: failing the ack would only run it again.
        self.metrics.update("replication_timeouts", kind="counter", force_log=True)
        self.logger.warning(
            "ack stored on the master but only %d of min_replicas=%d replicas confirmed it "
            "within %ss: a failover now could run the item again",
            acked,
            self.min_replicas,
            self.replica_timeout,
        )

    def topology(self) -> ConfiguredTopology:
        """The configured deployment: ``mode`` (``standalone``, ``sentinel`` or ``unknown``
        for a client whose pool does not say), ``service_name`` and ``sentinels``."""
        return connection.topology_of(self.target)

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

    @overload
    def processor(self, fn: F, /) -> F: ...

    @overload
    def processor(
        self, fn: None = None, /, *, name: str | None = None, module: str | None = None
    ) -> Callable[[F], F]: ...

    def processor(
        self, fn: F | None = None, /, *, name: str | None = None, module: str | None = None
    ) -> F | Callable[[F], F]:
        """Decorator: register a processor or callback at import time; returns it unchanged.

        ``@config.processor`` registers ``"module:qualname"``; ``@config.processor(name=...)``
        an alias that survives moving the function. A worker that imports the module knows it
        before any item is enqueued.
        """
        if isinstance(fn, str):
            raise TypeError(f"give the name as a keyword: @config.processor(name={fn!r})")
        register = self.registry.decorator(name, module)
        return register if fn is None else register(fn)

    def add_middleware(self, middleware: object) -> None:
        """Add an object whose hook methods (``before_process``, ``after_process``...; see
        :mod:`queue_system.core.hooks`) run for every item; after those added before it.

        Managers and workers created afterwards see it (a running worker keeps its list).

        Raises:
            TypeError: ``middleware`` has none of the hook methods (a class given for an
                instance, or a typo).
        """
        if isinstance(middleware, type) or not any(
            callable(getattr(middleware, name, None)) for name in HOOK_NAMES
        ):
            raise TypeError(
                f"middleware must be an object with one of {', '.join(HOOK_NAMES)}; "
                f"got {middleware!r}"
            )
        self.middleware.append(middleware)
        self._hooks = None

    def hooks(self, *built_in: object) -> HookChain:
        """The hook chain of ``built_in`` middleware followed by this config's middleware."""
        if built_in:
            return HookChain([*built_in, *self.middleware], self._report_hook_error)
        if self._hooks is None:
            self._hooks = HookChain(self.middleware, self._report_hook_error)
        return self._hooks

    def _report_hook_error(self, hook: str, exc: BaseException, operation_id: str | None) -> None:
        logging.getLogger("queue_system.hooks").error(
            "middleware hook %s raised %s for operation %s: %s",
            hook,
            type(exc).__name__,
            operation_id,
            exc,
            exc_info=exc,
            extra={"operation_id": operation_id, "hook": hook},
        )
        self.metrics.update("hook_errors", 1, operation_id=operation_id)

    def cron(
        self,
        expression: str | None = None,
        processor: CallableRef | None = None,
        *,
        every: dt.timedelta | float | None = None,
        entity: Any = None,
        queue_name: str | None = None,
        priority: str = "normal",
        timezone: str = "UTC",
        catch_up: CatchUp = "none",
        name: str | None = None,
    ) -> CronSpec:
        """Declare a periodic job: every worker of this config enqueues ``processor(entity)``
        on each tick, exactly once per tick across all workers.

        Give a cron expression (5 fields, or 6 with seconds first; evaluated in ``timezone``
        by cronsim, with Debian cron's DST rules) or ``every`` (a timedelta or seconds, at
        least 1 s; ticks are multiples of it since the Unix epoch, so all workers agree)::

            config.cron("*/5 * * * *", send_report, timezone="Europe/Berlin")
            config.cron(every=timedelta(seconds=30), processor=poll_feeds)

        Args:
            entity: the data each run gets (a JSON object), the same for every tick.
            queue_name / priority: where the items go (default: the processor's name,
                ``"normal"``).
            catch_up: ticks missed while no worker ran: ``"none"`` skips them, ``"last"``
                fires the newest one, ``"all"`` fires each (at most ``MAX_CATCH_UP``, the
                newest; older ones are logged and dropped). A tick up to a minute old is due,
                not missed, under every policy.
            name: the schedule's identity in Redis (default: the processor's registered
                name). Its last fired tick is kept under it, so a schedule whose expression
                changes keeps its history; give a name to run one processor on two schedules.

        Raises at once (ValueError/TypeError): a bad expression, an unknown time zone, a
        processor a worker could not find by name (a lambda or nested function), an entity
        that is not a JSON object, a name already declared.
        """
        if processor is None:
            raise TypeError("cron needs a processor: a module-level callable or registered name")
        every_ms = None
        if every is not None:
            seconds = every.total_seconds() if isinstance(every, dt.timedelta) else every
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise TypeError(f"every must be a timedelta or seconds, got {every!r}")
            every_ms = round(seconds * 1000)
        processor_name = self.registry.name_for(processor)
        schedule_name = processor_name if name is None else name
        if not isinstance(schedule_name, str) or not SCHEDULE_NAME_PATTERN.fullmatch(schedule_name):
            raise ValueError(
                f"schedule name {schedule_name!r} must be 1-100 of letters, digits, '_.:-'"
            )
        if schedule_name in self.schedules:
            raise ValueError(
                f"a schedule named {schedule_name!r} is already declared: give name=... "
                "to run one processor on several schedules"
            )
        data = {} if entity is None else entity_object(entity, argument="entity")
        encoded = dumps(data, what="entity")
        if len(encoded.encode()) > self.max_payload_bytes:  # else every tick would fail
            raise ValueError(f"the entity is larger than max_payload_bytes ({len(encoded)})")
        spec = CronSpec(
            name=schedule_name,
            processor=processor_name,
            expression=expression,
            every_ms=every_ms,
            timezone=timezone,
            entity=json.loads(encoded),
            # The default queue is the processor's function name, as enqueue names it.
            queue_name=validate_new_queue_name(
                processor_name.rpartition(":")[2].rpartition(".")[2]
                if queue_name is None
                else queue_name
            ),
            priority=validate_priority(priority),
            catch_up=catch_up,
        )
        self.schedules[schedule_name] = spec
        return spec

    def update_metric(self, metric_name: str, value: Any = 1, force_log: bool = False) -> None:
        """Update a metric of this process; logs it when the event-driven policy says so.

        :meth:`get_metrics` returns it under ``metric_name`` (and under ``local``).
        """
        self.metrics.update(metric_name, value, force_log)

    def get_metrics(self) -> MetricsSnapshot:
        """Totals shared by every process (from Redis), this process's ``update_metric``
        values under their own names (a shared total of the same name wins), and ``local``:
        every series of this process, e.g. ``"processed{queue=a,priority=high}"``."""
        scripts = self._scripts()
        shared = self.guard.call(
            lambda: run_sync(self.redis_client, scripts, read_metrics(self.keys))
        )
        return with_local(shared, self.metrics.snapshot(), self.metrics.unlabelled())

    def _scripts(self) -> Scripts[Script]:
        if self._registered_scripts is None:
            self._registered_scripts = Scripts.register(self.redis_client)
        return self._registered_scripts

    def __repr__(self) -> str:
        where = connection.redact_url(self.redis_url) if self.redis_url else "<client>"
        return f"QueueConfig(redis={where!r}, queue_prefix={self.queue_prefix!r})"


_CLUSTER_UNSUPPORTED = (
    "Redis Cluster is not supported yet: a queue's keys and scripts would span hash slots "
    "(CROSSSLOT). Use one Redis server, or a Sentinel group (redis+sentinel:// URL)"
)


def _is_cluster(client: object) -> bool:
    return isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.RedisCluster))


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _flags_by_queue(flags: Mapping[str, bool] | None) -> dict[str, bool]:
    if flags is None:
        return {}
    if not isinstance(flags, Mapping):
        raise TypeError(
            f"queue_keep_results must be a mapping of queue name to bool, got {flags!r}"
        )
    return {
        validate_queue_name(queue): _flag(f"queue_keep_results[{queue!r}]", keep)
        for queue, keep in flags.items()
    }


def _limits_by_queue(limits: Mapping[str, QueueLimits] | None) -> dict[str, QueueLimits]:
    if limits is None:
        return {}
    if not isinstance(limits, Mapping):
        raise TypeError(f"limits must be a mapping of queue name to QueueLimits, got {limits!r}")
    for queue, value in limits.items():
        if not isinstance(value, QueueLimits):
            raise TypeError(f"limits[{queue!r}] must be a QueueLimits, got {value!r}")
    return {validate_queue_name(queue): value for queue, value in limits.items()}
