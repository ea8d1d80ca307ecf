"""The ``queue-system`` command: run workers, watch queues, look up operations, replay failures.

Global options: ``--url`` (default ``$REDIS_URL``, else ``redis://localhost:6379/0``),
``--prefix`` (default ``queue:``), ``--timeout`` (seconds per Redis reply), ``--debug`` and
``--version``. Errors are one line on stderr and exit status 1 (``--debug`` shows the
traceback; usage errors exit 2); passwords in URLs are never printed. A closed pipe
(``queue-system status | head -1``) ends the command quietly with status 0. Log records (a
requeue, a purge) go to stderr as JSON lines; ``worker`` sets up logging for its whole process.
Thin: every command is a call to the public API.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import time
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live

from queue_system.cli.cancel import cancel, running_views
from queue_system.cli.cron import cron
from queue_system.cli.dashboard import dashboard
from queue_system.cli.failures import failures
from queue_system.cli.limits import limits, pause, resume
from queue_system.cli.prometheus import metrics as prometheus_metrics
from queue_system.cli.queues import purge, queues
from queue_system.cli.render import (
    make_console,
    pairs_table,
    print_json,
    status_view,
    workers_table,
)
from queue_system.cli.scheduled import scheduled
from queue_system.cli.state import State, current_state, where
from queue_system.cli.worker import METRICS_LOGGER, worker
from queue_system.engine.connection import DEFAULT_REDIS_URL, REDIS_URL_ENV_VAR, redact_url
from queue_system.logs import setup_json_logging
from queue_system.ops.admin import QueueAdmin
from queue_system.producer.sync import QueueManager

WIDE_HELP = "Every column, however wide (default: fit the terminal, dropping the least useful)."


class _Cli(click.Group):
    """Turns any error into one line on stderr and exit status 1 (unless ``--debug``), and a
    closed stdout pipe into a quiet exit 0."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader left (`| head`): nothing more to say
                _silence_stdout()
                raise click.exceptions.Exit(0) from None
            raise _one_line(ctx, exc) from None
        except Exception as exc:  # QueueSystemError, bad input, a failing app import...
            raise _one_line(ctx, exc) from None


def _one_line(ctx: click.Context, exc: Exception) -> Exception:
    state = ctx.find_object(State)
    if state is not None and state.debug:
        return exc
    return click.ClickException(f"{type(exc).__name__}: {exc}")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail on the pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        pass


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
@click.version_option(package_name="queue_system", prog_name="queue-system")
@click.pass_context
def cli(ctx: click.Context, url: str, prefix: str, timeout: float, debug: bool) -> None:
    """Operate a queue_system namespace: workers, status, failures, queues, health."""
    state = ctx.obj = State(url=url, prefix=prefix, timeout=timeout, debug=debug)
    library, metrics = logging.getLogger("queue_system"), logging.getLogger(METRICS_LOGGER)
    levels = (library.level, metrics.level)
    handler = setup_json_logging("DEBUG" if debug else "INFO", sys.stderr, "queue_system")
    # One record per metric update would flood a terminal (`worker --metrics-log` shows them).
    metrics.setLevel(logging.NOTSET if debug else logging.WARNING)

    def restore() -> None:  # a test runner invokes many times in one process
        library.removeHandler(handler)
        library.setLevel(levels[0])
        metrics.setLevel(levels[1])
        state.close()

    ctx.call_on_close(restore)


for command in (failures, worker, queues, purge):
    cli.add_command(command)
cli.add_command(scheduled)
for command in (pause, resume, limits):
    cli.add_command(command)
cli.add_command(cron)
cli.add_command(dashboard)  # the web dashboard ([web] extra, imported when run)
cli.add_command(prometheus_metrics)  # `queue-system metrics` ([prometheus] extra)
cli.add_command(cancel)


def main() -> None:
    """Console-script entry point (``queue-system``)."""
    try:
        cli.main(prog_name="queue-system")
    except SystemExit:
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # the reader left before our last lines: not an error
            _silence_stdout()
            sys.exit(0)
        raise


# --- status, monitor, health, workers, job -----------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the health dict as JSON.")
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def status(as_json: bool, wide: bool) -> None:
    """Every queue x tier depth, in flight, scheduled, failures, system errors, oldest age."""
    health = QueueAdmin(current_state().config).get_system_health()
    if as_json:
        print_json(health)
    else:
        console = make_console(wide=wide)
        console.print(status_view(health, where(), width=_fit(console, wide)))
    if not health["redis_connected"]:
        sys.exit(1)


def _fit(console: Console, wide: bool) -> int | None:
    """The width tables must fit, or None for every column."""
    return None if wide else console.width


@cli.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--snapshot", is_flag=True, help="Print once and exit.")
@click.option(
    "--iterations",
    type=click.IntRange(min=0),
    default=0,
    help="Stop after this many refreshes (0: never).",
)
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def monitor(interval: float, snapshot: bool, iterations: int, wide: bool) -> None:
    """Live view of queues and workers (Ctrl-C to leave).

    On a terminal the view redraws in place; piped or redirected, one plain-text frame is
    written per interval.
    """
    admin, manager = QueueAdmin(current_state().config), QueueManager(current_state().config)
    console = make_console(wide=wide)
    width = _fit(console, wide)

    def view() -> RenderableType:
        health = admin.get_system_health()
        parts: list[RenderableType] = [status_view(health, where(), width=width)]
        if health["redis_connected"]:
            parts.append(workers_table(manager.get_workers(), width=width))
            parts.extend(running_views(admin.running_operations(), width=width))
        return Group(*parts)

    if snapshot:
        console.print(view())
        return
    try:
        if console.is_terminal:
            _live(console, view, interval, iterations)
        else:
            _frames(console, view, interval, iterations)
    except KeyboardInterrupt:
        pass


def _live(console: Console, view: Any, interval: float, iterations: int) -> None:
    with Live(view(), console=console, auto_refresh=False) as live:
        shown = 1
        while not iterations or shown < iterations:
            time.sleep(interval)
            live.update(view(), refresh=True)
            shown += 1


def _frames(console: Console, view: Any, interval: float, iterations: int) -> None:
    shown = 0
    while True:
        console.print(view())
        console.file.flush()  # a reader (tail -f, a log shipper) sees each frame at once
        shown += 1
        if iterations and shown >= iterations:
            return
        time.sleep(interval)
        console.print()


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def health(as_json: bool) -> None:
    """Exit 0 when Redis answers, 1 when not (a liveness probe)."""
    state = current_state()
    result = QueueAdmin(state.config).get_system_health()
    if as_json:
        print_json(result)
    elif result["totals"] is not None and result["workers"] is not None:
        totals, workers = result["totals"], result["workers"]
        click.echo(
            f"ok: {result['server']} at {redact_url(state.url)} answered in "
            f"{result['latency_ms'] or 0:.1f} ms; {len(result['queue_stats'])} queues, "
            f"{totals['queue_size']} waiting, {totals['scheduled_jobs']} scheduled, "
            f"{totals['failed_jobs']} failures, "
            f"{workers['count']} workers"
        )
        paused = [name for name, stats in result["queue_stats"].items() if stats.get("paused")]
        if paused:
            click.echo(f"paused: {', '.join(paused)}")
    else:
        click.echo(f"DOWN: {redact_url(state.url)}: {result['error']}", err=True)
    sys.exit(0 if result["redis_connected"] else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--wide", is_flag=True, help=WIDE_HELP)
def workers(as_json: bool, wide: bool) -> None:
    """Live workers (a worker that stops heartbeating disappears after its TTL)."""
    found = QueueManager(current_state().config).get_workers()
    if as_json:
        print_json(found)
    else:
        console = make_console(wide=wide)
        console.print(workers_table(found, width=_fit(console, wide)))


@cli.command()
@click.argument("operation_id")
@click.option("--json", "as_json", is_flag=True)
def job(operation_id: str, as_json: bool) -> None:
    """Status of one operation by id (exit 1 if unknown or expired)."""
    record = QueueManager(current_state().config).get_operation(operation_id)
    if record is None:
        click.echo(f"no operation {operation_id!r} (unknown, or its record expired)", err=True)
        sys.exit(1)
    if as_json:
        print_json(record)
        return
    last_error = record.get("last_error") or {}
    rows = {k: v for k, v in record.items() if k not in ("last_error", "result")}
    if rows.get("position_at_least") is None:
        rows.pop("position_at_least", None)  # set only for an item deep in a long tier
    make_console().print(pairs_table(f"operation {operation_id}", rows))
    if record.get("result") is not None:
        click.echo(f"result: {json.dumps(record['result'], default=str)}")
    if last_error:
        click.echo(f"last error: {last_error.get('type')}: {last_error.get('message')}")
        click.echo(str(last_error.get("traceback") or "").rstrip())


# --- demo --------------------------------------------------------------------------------------


@cli.command()
def demo() -> None:
    """Run the demo: 300 jobs, one worker, where every job ended.

    Uses --url / $REDIS_URL when given (under a fresh prefix; its keys are deleted at the
    end), else starts a throwaway local server.
    """
    from queue_system.cli import demo as demo_module  # its processors load only when asked

    root = click.get_current_context().find_root()
    source = root.get_parameter_source("url")
    given = source in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )
    sys.exit(demo_module.main(current_state().url if given else None))
