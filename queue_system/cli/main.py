"""The ``queue-system`` command: run workers, watch queues, look up operations, replay failures.

Global options: ``--url`` (default ``$REDIS_URL``, else ``redis://localhost:6379/0``),
``--prefix`` (default ``queue:``), ``--timeout`` (seconds per Redis reply) and ``--debug``.
Errors are one line on stderr and exit status 1 (``--debug`` shows the traceback); passwords
in URLs are never printed. Log records (a requeue, a purge, the worker's events) go to stderr
as JSON lines. Thin: every command is a call to the public API.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import runpy
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live

from queue_system.cli.failures import failures
from queue_system.cli.render import (
    make_console,
    pairs_table,
    print_json,
    status_view,
    workers_table,
)
from queue_system.config import QueueConfig
from queue_system.core.types import PRIORITIES
from queue_system.engine.connection import DEFAULT_REDIS_URL, REDIS_URL_ENV_VAR, redact_url
from queue_system.logs import setup_json_logging
from queue_system.ops.admin import QueueAdmin, operator_identity
from queue_system.producer.sync import QueueManager
from queue_system.worker.loops import (
    BURST_OUTAGE_LIMIT_S,
    DEFAULT_GRACE_PERIOD_S,
    QueueWorker,
)

logger = logging.getLogger("queue_system.cli")
DEMO_PATH = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


@dataclass
class State:
    """Global options, and the QueueConfig built from them on first use."""

    url: str
    prefix: str
    timeout: float
    debug: bool
    _config: QueueConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> QueueConfig:
        if self._config is None:
            self._config = QueueConfig(
                redis_url=self.url, queue_prefix=self.prefix, connection_timeout=self.timeout
            )
        return self._config


class _Cli(click.Group):
    """Turns any error into one line on stderr and exit status 1 (unless ``--debug``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # QueueSystemError, bad input, a failing app import...
            state = ctx.find_object(State)
            if state is not None and state.debug:
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar=REDIS_URL_ENV_VAR,
    default=DEFAULT_REDIS_URL,
    show_default=f"${REDIS_URL_ENV_VAR}, else {DEFAULT_REDIS_URL}",
)
@click.option("--prefix", default="queue:", show_default=True, help="Key namespace.")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds per Redis reply.")
@click.option("--debug", is_flag=True, help="Debug logs, and tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, url: str, prefix: str, timeout: float, debug: bool) -> None:
    """Operate a queue_system namespace: workers, status, failures, health."""
    state = ctx.obj = State(url, prefix, timeout, debug)
    target = logging.getLogger("queue_system")
    level = target.level
    handler = setup_json_logging("DEBUG" if debug else "INFO", sys.stderr, "queue_system")

    def restore() -> None:  # a test runner invokes many times in one process
        target.removeHandler(handler)
        target.setLevel(level)
        if state._config is not None:
            state._config.redis_client.close()

    ctx.call_on_close(restore)


cli.add_command(failures)  # the `failures` sub-commands live in cli_failures


def main() -> None:
    """Console-script entry point (``queue-system``)."""
    cli(prog_name="queue-system")


def _state() -> State:
    state = click.get_current_context().find_object(State)
    assert state is not None, "commands run under the cli group"
    return state


def _where() -> str:
    state = _state()
    return f"{redact_url(state.url)} prefix {state.prefix}"


# --- worker ------------------------------------------------------------------------------------


@cli.command()
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
def worker(
    app: str,
    queues: str | None,
    concurrency: int,
    burst: bool,
    wait_scheduled: bool,
    outage_limit: float | None,
    grace_period: float,
    work_timeout: float,
) -> None:
    """Run a worker for APP ('module:attribute' naming the application's QueueConfig).

    SIGTERM/SIGINT: running items finish within the grace period, the rest go back at once;
    a second signal stops at once (running items are released back to their queues).
    Exits 1 with one line on stderr if the worker had to stop on its own (Redis unreachable
    past the outage limit, or a background loop that kept failing).
    """
    if wait_scheduled and not burst:
        raise click.UsageError("--wait-scheduled only applies with --burst")
    config = _load_app(app)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    qw = QueueWorker(
        config,
        concurrency,
        work_timeout,
        queues=names,
        burst=burst,
        wait_scheduled=wait_scheduled,
        outage_limit=outage_limit,
        grace_period=grace_period,
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
    asyncio.run(_serve(qw))


async def _serve(qw: QueueWorker) -> None:
    loop = asyncio.get_running_loop()
    stops: list[asyncio.Task[None]] = []

    def on_signal(sig: signal.Signals) -> None:
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

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await qw.run()
        await asyncio.gather(*stops)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _load_app(spec: str) -> QueueConfig:
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
    ctx = click.get_current_context()
    state = _state()
    explicit = {p: ctx.find_root().get_parameter_source(p) for p in ("url", "prefix")}
    if explicit["prefix"] == click.core.ParameterSource.COMMANDLINE and (
        state.prefix != target.queue_prefix
    ):
        raise click.ClickException(
            f"--prefix {state.prefix!r} differs from {spec}'s queue_prefix {target.queue_prefix!r}"
        )
    return target


# --- status, monitor, health, workers, job -----------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the health dict as JSON.")
def status(as_json: bool) -> None:
    """Every queue x tier depth, in flight, scheduled, failures, system errors, oldest age."""
    health = QueueAdmin(_state().config).get_system_health()
    if as_json:
        print_json(health)
    else:
        make_console().print(status_view(health, _where()))
    if not health["redis_connected"]:
        sys.exit(1)


@cli.command()
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--snapshot", is_flag=True, help="Print once and exit.")
@click.option("--iterations", default=0, help="Stop after this many refreshes (0: never).")
def monitor(interval: float, snapshot: bool, iterations: int) -> None:
    """Live view of queues and workers (Ctrl-C to leave)."""
    admin, manager = QueueAdmin(_state().config), QueueManager(_state().config)

    def view() -> RenderableType:
        health = admin.get_system_health()
        parts: list[RenderableType] = [status_view(health, _where())]
        if health["redis_connected"]:
            parts.append(workers_table(manager.get_workers()))
        return Group(*parts)

    console = make_console()
    if snapshot:
        console.print(view())
        return
    with Live(view(), console=console, auto_refresh=False) as live:
        shown = 1
        try:
            while not iterations or shown < iterations:
                time.sleep(interval)
                live.update(view(), refresh=True)
                shown += 1
        except KeyboardInterrupt:
            pass


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def health(as_json: bool) -> None:
    """Exit 0 when Redis answers, 1 when not (a liveness probe)."""
    state = _state()
    result = QueueAdmin(state.config).get_system_health()
    if as_json:
        print_json(result)
    elif result["totals"] is not None and result["workers"] is not None:
        totals, workers = result["totals"], result["workers"]
        click.echo(
            f"ok: {result['server']} at {redact_url(state.url)} answered in "
            f"{result['latency_ms'] or 0:.1f} ms; {len(result['queue_stats'])} queues, "
            f"{totals['queue_size']} waiting, {totals['failed_jobs']} failures, "
            f"{workers['count']} workers"
        )
    else:
        click.echo(f"DOWN: {redact_url(state.url)}: {result['error']}", err=True)
    sys.exit(0 if result["redis_connected"] else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def workers(as_json: bool) -> None:
    """Live workers (a worker that stops heartbeating disappears after its TTL)."""
    found = QueueManager(_state().config).get_workers()
    if as_json:
        print_json(found)
    else:
        make_console().print(workers_table(found))


@cli.command()
@click.argument("operation_id")
@click.option("--json", "as_json", is_flag=True)
def job(operation_id: str, as_json: bool) -> None:
    """Status of one operation by id (exit 1 if unknown or expired)."""
    record = QueueManager(_state().config).get_operation(operation_id)
    if record is None:
        click.echo(f"no operation {operation_id!r} (unknown, or its record expired)", err=True)
        sys.exit(1)
    if as_json:
        print_json(record)
        return
    last_error = record.get("last_error") or {}
    rows = {k: v for k, v in record.items() if k not in ("last_error", "result")}
    make_console().print(pairs_table(f"operation {operation_id}", rows))
    if record.get("result") is not None:
        click.echo(f"result: {json.dumps(record['result'], default=str)}")
    if last_error:
        click.echo(f"last error: {last_error.get('type')}: {last_error.get('message')}")
        click.echo(str(last_error.get("traceback") or "").rstrip())


# --- purge, demo -------------------------------------------------------------------------------


@cli.command()
@click.argument("queue")
@click.option("--priority", type=click.Choice(PRIORITIES), help="One tier (default: all).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(queue: str, priority: str | None, yes: bool) -> None:
    """Delete every waiting item of QUEUE (in-flight and delayed items are untouched)."""
    tiers = [priority] if priority else list(PRIORITIES)
    if not yes:
        click.confirm(f"Delete every waiting item of {queue} ({', '.join(tiers)})?", abort=True)
    manager = QueueManager(_state().config)
    counts = {tier: manager.purge_queue(queue, tier) for tier in tiers}
    logging.getLogger("queue_system.admin").info(
        "purge: %d waiting items of %s",
        sum(counts.values()),
        queue,
        extra={
            "action": "purge_queue",
            "count": sum(counts.values()),
            "queue": queue,
            "tiers": counts,
            **operator_identity(),
        },
    )
    detail = ", ".join(f"{tier} {n}" for tier, n in counts.items())
    click.echo(f"purged {sum(counts.values())} waiting items of {queue} ({detail})")


@cli.command()
def demo() -> None:
    """Run the README demo (examples/demo.py of a source checkout)."""
    path = _demo_path()
    if not path.is_file():
        raise click.ClickException(f"{path} not found: the demo runs from a source checkout")
    ctx = click.get_current_context()
    if ctx.find_root().get_parameter_source("url") == click.core.ParameterSource.COMMANDLINE:
        os.environ["REDIS_URL"] = _state().url
    code = runpy.run_path(str(path), run_name="queue_system_demo")["main"]()
    sys.exit(int(code or 0))


def _demo_path() -> Path:
    return DEMO_PATH
