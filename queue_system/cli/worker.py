"""``queue-system worker APP``: run a worker for an application's QueueConfig.

The worker sets up logging for the whole process (the root logger), so the application's own
records appear beside the library's; metric records (logger ``queue_system.metrics``) appear
only with ``--metrics-log`` or ``--log-level debug``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

import click

from queue_system.cli.state import current_state, given_on_command_line
from queue_system.config import QueueConfig
from queue_system.core.checks import validate_queue_name
from queue_system.engine.connection import redact_url
from queue_system.logs import HANDLER_NAME, LOG_FORMATS, setup_logging
from queue_system.ops.admin import QueueAdmin
from queue_system.worker.child import RECYCLE_EXIT_CODE, RecycleLimits, SupervisedWorker, watch
from queue_system.worker.loops import (
    BURST_OUTAGE_LIMIT_S,
    DEFAULT_GRACE_PERIOD_S,
    EXECUTORS,
    QueueWorker,
)
from queue_system.worker.supervisor import Supervisor, WorkerOptions, parse_processes

logger = logging.getLogger("queue_system.cli")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
METRICS_LOGGER = "queue_system.metrics"


@click.command()
@click.argument("app")
@click.option("--queues", help="Comma-separated queue names (default: every queue).")
@click.option("--concurrency", default=5, show_default=True, help="Items run at once.")
@click.option(
    "--burst",
    is_flag=True,
    help="Exit 0 once nothing is waiting or in flight (for cron); retries scheduled for later "
    "are left for the next run.",
)
@click.option(
    "--wait-scheduled",
    is_flag=True,
    help="With --burst: also wait for scheduled retries to come due and run.",
)
@click.option(
    "--outage-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Exit 1 once Redis has been unreachable this many seconds "
    f"[default: {BURST_OUTAGE_LIMIT_S:g} with --burst, else never].",
)
@click.option("--grace-period", default=DEFAULT_GRACE_PERIOD_S, show_default=True)
@click.option("--work-timeout", default=30.0, show_default=True, help="Default item timeout.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Level of the root logger: the application's records and the library's.",
)
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="json", show_default=True)
@click.option(
    "--metrics-log",
    is_flag=True,
    help="Also log every metric record (logger queue_system.metrics; on with debug).",
)
@click.option(
    "--processes",
    default=None,
    metavar="N|auto",
    help="Run N worker processes (each with --concurrency) under a supervisor that restarts "
    "one that dies; 'auto': one per CPU [default: this process only].",
)
@click.option(
    "--max-jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Recycle: stop gracefully after about this many finished jobs "
    "(under --processes a fresh process replaces it; alone, exit 0).",
)
@click.option(
    "--max-memory",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MIB",
    help="Recycle: stop gracefully once the process's RSS is above this many MiB "
    "(checked every second, after a first job).",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default="thread",
    show_default=True,
    help="Where sync processors run: threads, or child processes (one per --concurrency "
    "slot; CPU-bound work uses every core and a timeout kills the run).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this process's run/wait time histograms for Prometheus at /metrics on this "
    "port (the [prometheus] extra); with --processes N, child i serves PORT+i.",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address --metrics-port binds."
)
@click.option("--supervised-by", default=None, hidden=True)  # set by the supervisor
def worker(
    app: str,
    queues: str | None,
    concurrency: int,
    burst: bool,
    wait_scheduled: bool,
    outage_limit: float | None,
    grace_period: float,
    work_timeout: float,
    log_level: str,
    log_format: str,
    metrics_log: bool,
    processes: str | None = None,
    max_jobs: int | None = None,
    max_memory: float | None = None,
    supervised_by: str | None = None,
    executor: str = "thread",
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Run a worker for APP ('module:attribute' naming the application's QueueConfig).

    SIGTERM/SIGINT: running items finish within the grace period, the rest go back at once;
    a second signal stops at once (running items are released back to their queues), as
    does SIGQUIT.
    Exits 1 with one line on stderr if the worker had to stop on its own (Redis unreachable
    past the outage limit, or a background loop that kept failing).

    With --processes, a supervisor runs that many worker processes and restarts one that
    dies; signals are forwarded (the second stops them at once). Exits 1 if they keep dying
    (5 deaths within 60 s).
    """
    if wait_scheduled and not burst:
        raise click.UsageError("--wait-scheduled only applies with --burst")
    count = _process_count(processes, supervised_by)
    limits = RecycleLimits(max_jobs=max_jobs, max_memory_mb=max_memory)
    names = _queue_names(queues)
    if count is not None and metrics_port is not None and not 0 < metrics_port <= 65536 - count:
        raise click.BadParameter(
            f"with --processes {count}, ports {metrics_port}..{metrics_port + count - 1} "
            "must be in 1..65535",
            param_hint="--metrics-port",
        )
    config = load_app(app)
    _log_whole_process(log_level, log_format, metrics_log)
    if names is not None:
        _check_queues_exist(config, names, burst)
    if count is not None:
        options = WorkerOptions(
            queues=names,
            concurrency=concurrency,
            burst=burst,
            wait_scheduled=wait_scheduled,
            outage_limit=outage_limit,
            grace_period=grace_period,
            work_timeout=work_timeout,
            max_jobs=max_jobs,
            max_memory_mb=max_memory,
            log_level=log_level,
            log_format=log_format,
            metrics_log=metrics_log,
            executor=executor,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
        asyncio.run(Supervisor(app, count, options).run())
        return
    if metrics_port is not None:
        _serve_worker_metrics(config, metrics_host, metrics_port)
    worker_class = QueueWorker if supervised_by is None else SupervisedWorker
    extra: dict[str, Any] = {} if supervised_by is None else {"supervisor_id": supervised_by}
    qw = worker_class(
        config,
        concurrency,
        work_timeout,
        queues=names,
        burst=burst,
        wait_scheduled=wait_scheduled,
        outage_limit=outage_limit,
        grace_period=grace_period,
        executor=executor,
        **extra,
    )
    where = redact_url(config.redis_url) if config.redis_url else "<client>"
    served = ",".join(names or ["every queue"])
    logger.info(
        "worker %s serving %s on %s (prefix %s, concurrency %d)",
        qw.worker_id,
        served,
        where,
        config.queue_prefix,
        concurrency,
    )
    recycled = asyncio.run(_serve(qw, limits, _supervisor_pid(supervised_by)))
    if recycled is not None and supervised_by is not None:
        click.get_current_context().exit(RECYCLE_EXIT_CODE)  # the supervisor replaces us


def _serve_worker_metrics(config: QueueConfig, host: str, port: int) -> None:
    """Add a PrometheusMiddleware to ``config`` and serve its registry until the command ends."""
    try:
        from prometheus_client import start_http_server

        from queue_system.worker.prometheus import PrometheusMiddleware
    except ImportError as exc:
        raise click.ClickException(
            f"--metrics-port needs the [prometheus] extra: pip install "
            f"'queue_system[prometheus]' ({exc})"
        ) from None
    middleware = PrometheusMiddleware()
    try:
        server, thread = start_http_server(port, addr=host, registry=middleware.registry)
    except OSError as exc:
        raise click.ClickException(f"--metrics-port {port} on {host}: {exc}") from None
    config.add_middleware(middleware)
    logger.info("worker metrics at http://%s:%d/metrics", host, server.server_port)

    def stop() -> None:  # a test runner invokes many times in one process
        server.shutdown()
        server.server_close()
        thread.join()

    click.get_current_context().call_on_close(stop)


def _process_count(processes: str | None, supervised_by: str | None) -> int | None:
    if processes is None:
        return None
    if supervised_by is not None:
        raise click.UsageError("a supervised worker cannot itself run --processes")
    try:
        return parse_processes(processes.strip().lower())
    except ValueError:
        raise click.BadParameter(
            f"{processes!r}: a number >= 1, or 'auto'", param_hint="--processes"
        ) from None


def _supervisor_pid(supervisor_id: str | None) -> int | None:
    """The supervisor's pid, from its id ``host:pid:suffix`` (as it was when we started)."""
    if supervisor_id is None:
        return None
    try:
        return int(supervisor_id.rsplit(":", 2)[-2])
    except (IndexError, ValueError):
        raise click.BadParameter(supervisor_id, param_hint="--supervised-by") from None


def _queue_names(queues: str | None) -> list[str] | None:
    if queues is None:
        return None
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        raise click.BadParameter(
            "name at least one queue (omit --queues for every queue)", param_hint="--queues"
        )
    try:
        return [validate_queue_name(name) for name in names]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--queues") from None


def _check_queues_exist(config: QueueConfig, names: list[str], burst: bool) -> None:
    """A burst run on a name nothing was ever enqueued to is a typo: say so, exit 1."""
    known = set(QueueAdmin(config).queue_names())
    unknown = [name for name in names if name not in known]
    if not unknown:
        return
    listing = ", ".join(sorted(known)) or "none"
    if burst:
        raise click.ClickException(f"no such queue: {', '.join(unknown)} (known: {listing})")
    logger.warning(
        "no such queue yet: %s (known: %s); waiting for items to arrive",
        ", ".join(unknown),
        listing,
    )


def _log_whole_process(level: str, log_format: str, metrics_log: bool) -> None:
    """Root logger at ``level`` in ``log_format``; undone when the command ends."""
    ctx = click.get_current_context()
    root, library, metrics = (logging.getLogger(n) for n in ("", "queue_system", METRICS_LOGGER))
    saved = (root.level, library.level, metrics.level)
    # The group's own handler on "queue_system" would print library records twice.
    group_handlers = [h for h in library.handlers if h.get_name() == HANDLER_NAME]
    for handler in group_handlers:
        library.removeHandler(handler)
    handler = setup_logging(level, log_format, sys.stderr)
    library.setLevel(logging.NOTSET)  # the root's level decides
    if level.lower() == "debug":
        metrics.setLevel(logging.NOTSET)
    else:  # one record per metric update would flood a terminal
        metrics.setLevel(logging.INFO if metrics_log else logging.WARNING)

    def restore() -> None:  # a test runner invokes many times in one process
        root.removeHandler(handler)
        root.setLevel(saved[0])
        library.setLevel(saved[1])
        metrics.setLevel(saved[2])
        for handler_ in group_handlers:
            library.addHandler(handler_)

    ctx.call_on_close(restore)


async def _serve(
    qw: QueueWorker, limits: RecycleLimits | None = None, parent_pid: int | None = None
) -> str | None:
    """Run ``qw`` until a signal (or the end of a burst); why it recycled itself, if it did."""
    loop = asyncio.get_running_loop()
    stops: list[asyncio.Task[None]] = []
    watcher: asyncio.Task[str | None] | None = None
    recycled: object = None
    if (limits is not None and limits.any) or parent_pid is not None:
        watcher = loop.create_task(watch(qw, limits or RecycleLimits(), parent_pid=parent_pid))

    def on_signal(sig: signal.Signals) -> None:
        if watcher is not None and not watcher.done():  # the signal's stop takes over
            watcher.cancel()
        if not stops:
            logger.warning(
                "%s: stopping (grace period %ss); send again to stop at once",
                sig.name,
                qw.grace_period,
            )
            stops.append(loop.create_task(qw.stop()))
        else:
            logger.warning("%s again: stopping at once, releasing running items", sig.name)
            stops.append(loop.create_task(qw.stop(grace_period=0)))

    def on_quit() -> None:
        # SIGQUIT stops at once whatever came before: a supervisor's second stage. (Two
        # SIGTERMs sent while the process is not scheduled reach it as one.)
        if watcher is not None and not watcher.done():
            watcher.cancel()
        logger.warning("SIGQUIT: stopping at once, releasing running items")
        stops.append(loop.create_task(qw.stop(grace_period=0)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGQUIT, on_quit)
    try:
        await qw.run()
        await asyncio.gather(*stops)
        # The watcher ends within a check interval once the worker stopped; it may be the one
        # that stopped it (then it returns why).
        if watcher is not None:
            (recycled,) = await asyncio.gather(watcher, return_exceptions=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.remove_signal_handler(sig)
        if watcher is not None and not watcher.done():  # run() raised
            watcher.cancel()
    return recycled if isinstance(recycled, str) else None


def load_app(spec: str) -> QueueConfig:
    """The QueueConfig ``spec`` ('module:attribute') names; global ``--url``/``--prefix``
    typed on the command line must name the same server and prefix (else exit 2)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(
            "use 'module:attribute', e.g. 'myapp.queues:config'", param_hint="APP"
        )
    if os.getcwd() not in sys.path:  # like `python -m`: the operator's own modules import
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(f"cannot load {spec}: {exc}") from None
    if not isinstance(target, QueueConfig):
        raise click.ClickException(f"{spec} is a {type(target).__name__}, not a QueueConfig")
    _check_same_namespace(spec, target)
    return target


def _check_same_namespace(spec: str, config: QueueConfig) -> None:
    """The app's config decides where to connect: a different --url/--prefix is refused,
    never silently ignored."""
    state = current_state()
    if given_on_command_line("url") and not _same_server(state.url, config.redis_url):
        theirs = redact_url(config.redis_url) if config.redis_url else "its own redis_client"
        raise click.UsageError(
            f"--url {redact_url(state.url)} differs from {spec}'s redis_url {theirs}: "
            "drop --url, or point the app at that server"
        )
    if given_on_command_line("prefix") and state.prefix != config.queue_prefix:
        raise click.UsageError(
            f"--prefix {state.prefix!r} differs from {spec}'s queue_prefix "
            f"{config.queue_prefix!r}: drop --prefix, or change the app's"
        )


def _same_server(url: str, other: str | None) -> bool:
    """Whether two Redis URLs name the same server, user and database (defaults filled in)."""
    if other is None:
        return False

    def parts(text: str) -> tuple[object, ...]:
        u = urlsplit(text)
        db = u.path.strip("/") or "0"
        return (u.scheme, (u.hostname or "").lower(), u.port or 6379, db, u.username, u.password)

    try:
        return parts(url) == parts(other)
    except ValueError:  # a malformed port: compare as written
        return url == other
