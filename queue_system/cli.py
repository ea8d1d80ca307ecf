"""The ``queue-system`` command: run workers, watch queues, look up operations, replay failures.

Global options: ``--url`` (default ``$REDIS_URL``, else ``redis://localhost:6379/0``),
``--prefix`` (default ``queue:``), ``--timeout`` (seconds per Redis reply) and ``--debug``.
Errors are one line on stderr and exit status 1 (``--debug`` shows the traceback); passwords
in URLs are never printed. Log records (a requeue, a purge, the worker's events) go to stderr
as JSON lines. Thin: every command is a call to the public API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import logging
import os
import runpy
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .admin import QueueAdmin, operator_identity
from .clock import SystemClock
from .config import QueueConfig
from .connection import DEFAULT_REDIS_URL, REDIS_URL_ENV_VAR, redact_url
from .logs import setup_json_logging
from .manager import QueueManager
from .types import PRIORITIES
from .worker import DEFAULT_GRACE_PERIOD_S, QueueWorker

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
DEMO_PATH = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MESSAGE_CHARS = 40  # of each error message in `failures list` (`failures show` has it all)


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
    "--url", envvar=REDIS_URL_ENV_VAR, default=DEFAULT_REDIS_URL,
    show_default=f"${REDIS_URL_ENV_VAR}, else {DEFAULT_REDIS_URL}",
)  # fmt: skip
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


def main() -> None:
    """Console-script entry point (``queue-system``)."""
    cli(prog_name="queue-system")


def _state() -> State:
    state = click.get_current_context().find_object(State)
    assert state is not None, "commands run under the cli group"
    return state


def _console() -> Console:
    # Piped output (files, less, CI logs) is not wrapped at 80 columns: wide tables stay whole.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 160)
    return Console(width=width, highlight=False)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# --- worker ------------------------------------------------------------------------------------


@cli.command()
@click.argument("app")
@click.option("--queues", help="Comma-separated queue names (default: every queue).")
@click.option("--concurrency", default=5, show_default=True, help="Items run at once.")
@click.option("--burst", is_flag=True, help="Exit 0 once nothing is waiting (for cron).")
@click.option("--grace-period", default=DEFAULT_GRACE_PERIOD_S, show_default=True)
@click.option("--work-timeout", default=30.0, show_default=True, help="Default item timeout.")
def worker(
    app: str, queues: str | None, concurrency: int, burst: bool, grace_period: float,
    work_timeout: float,
) -> None:  # fmt: skip
    """Run a worker for APP ('module:attribute' naming the application's QueueConfig).

    SIGTERM/SIGINT: running items finish within the grace period, the rest go back at once;
    a second signal stops at once (running items are released back to their queues).
    """
    config = _load_app(app)
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    qw = QueueWorker(
        config, concurrency, work_timeout, queues=names, burst=burst, grace_period=grace_period
    )
    where = redact_url(config.redis_url) if config.redis_url else "<client>"
    served = ",".join(names or ["every queue"])
    logger.info("worker %s serving %s on %s (prefix %s, concurrency %d)", qw.worker_id, served,
                where, config.queue_prefix, concurrency)  # fmt: skip
    asyncio.run(_serve(qw))


async def _serve(qw: QueueWorker) -> None:
    loop = asyncio.get_running_loop()
    stops: list[asyncio.Task[None]] = []

    def on_signal(sig: signal.Signals) -> None:
        if not stops:
            logger.warning("%s: stopping (grace period %ss); send again to stop at once",
                           sig.name, qw.grace_period)  # fmt: skip
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
        _print_json(health)
    else:
        _console().print(_status_view(health))
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
        parts: list[RenderableType] = [_status_view(health)]
        if health["redis_connected"]:
            parts.append(_workers_table(manager.get_workers()))
        return Group(*parts)

    console = _console()
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
        _print_json(result)
    elif result["redis_connected"] and result["totals"] is not None:
        totals, workers = result["totals"], result["workers"]
        click.echo(f"ok: {result['server']} at {redact_url(state.url)} answered in "
                   f"{result['latency_ms']:.1f} ms; {len(result['queue_stats'])} queues, "
                   f"{totals['queue_size']} waiting, {totals['failed_jobs']} failures, "
                   f"{workers['count']} workers")  # fmt: skip
    else:
        click.echo(f"DOWN: {redact_url(state.url)}: {result['error']}", err=True)
    sys.exit(0 if result["redis_connected"] else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def workers(as_json: bool) -> None:
    """Live workers (a worker that stops heartbeating disappears after its TTL)."""
    found = QueueManager(_state().config).get_workers()
    if as_json:
        _print_json(found)
    else:
        _console().print(_workers_table(found))


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
        _print_json(record)
        return
    last_error = record.get("last_error") or {}
    rows = {k: v for k, v in record.items() if k not in ("last_error", "result")}
    _console().print(_pairs(f"operation {operation_id}", rows))
    if record.get("result") is not None:
        click.echo(f"result: {json.dumps(record['result'], default=str)}")
    if last_error:
        click.echo(f"last error: {last_error.get('type')}: {last_error.get('message')}")
        click.echo(str(last_error.get("traceback") or "").rstrip())


# --- failures ----------------------------------------------------------------------------------


@cli.group()
def failures() -> None:
    """Inspect, requeue, purge and export failures (or, with --system-errors, system errors)."""


def _filters(f: F) -> F:
    options = [
        click.option("--system-errors", is_flag=True, help="Act on system_errors."),
        click.option("--queue", help="Only this queue."),
        click.option("--processor", help="Processor name, or its last part."),
        click.option("--error", "error_type", help="Exception type or reason."),
        click.option("--since", callback=_when_option, help="e.g. 30m, 2h, 1d, ISO 8601, epoch."),
        click.option("--until", callback=_when_option, help="Same forms as --since."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _when_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip()
    try:
        if text[-1:] in _UNITS and text[:-1].replace(".", "", 1).isdigit():
            return SystemClock().time() - float(text[:-1]) * _UNITS[text[-1]]
        if text.replace(".", "", 1).isdigit():
            return float(text)
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()
    except ValueError:
        raise click.BadParameter(
            "use 30s, 15m, 2h, 7d, an ISO 8601 time or epoch seconds"
        ) from None


@failures.command("list")
@_filters
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def failures_list(limit: int, as_json: bool, system_errors: bool, **filters: Any) -> None:
    """Dead letters, newest first."""
    found = QueueAdmin(_state().config).list_dead_letters(
        system_errors=system_errors, limit=limit, **filters
    )
    if as_json:
        _print_json(found)
        return
    table = Table(title=f"{'system_errors' if system_errors else 'failures'} ({len(found)})")
    for column in ("at (UTC)", "operation", "queue", "processor", "error", "runs"):
        table.add_column(column, no_wrap=True)
    table.add_column("message", no_wrap=True)
    for r in found:
        error = r.get("error_type") if r.get("reason") == "failed" else r.get("reason")
        processor = str(r.get("processor")).rpartition(":")[2]
        cells = (r.get("operation_id"), r.get("queue"), processor, error, r.get("attempts"))
        message = str(r.get("message"))
        table.add_row(_time(r.get("at")), *map(str, cells), _cut(message, MESSAGE_CHARS))
    _console().print(table)


@failures.command("show")
@click.argument("operation_id")
@click.option("--system-errors", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def failures_show(operation_id: str, system_errors: bool, as_json: bool) -> None:
    """One dead letter: why, every attempt with its traceback, and the original payload."""
    admin = QueueAdmin(_state().config)
    record = admin.get_dead_letter(operation_id, system_errors)
    if record is None and not system_errors:  # an operator may not know which list holds it
        record = admin.get_dead_letter(operation_id, system_errors=True)
    if record is None:
        click.echo(f"no failure or system error {operation_id!r}", err=True)
        sys.exit(1)
    if as_json:
        _print_json(record)
        return
    keys = ("operation_id", "reason", "error_type", "message", "queue", "priority", "processor",
            "attempts")  # fmt: skip
    rows = {k: record.get(k) for k in keys} | {"at": _time(record.get("at"))}
    _console().print(
        _pairs("failure" if record.get("reason") == "failed" else "system error", rows)
    )
    for n, attempt in enumerate(record.get("history") or [], 1):
        click.echo(f"--- attempt {n} at {_time(attempt.get('at'))}: "
                   f"{attempt.get('error_type')}: {attempt.get('message')}")  # fmt: skip
        click.echo(str(attempt.get("traceback") or "").rstrip())
    envelope = record.get("envelope")
    click.echo("--- payload (entity):")
    if isinstance(envelope, dict) and "entity" in envelope:
        click.echo(json.dumps(envelope["entity"], indent=2, default=str))
    else:
        click.echo(f"(not decodable) raw: {str(record.get('raw'))[:2000]}")


@failures.command("requeue")
@click.argument("operation_ids", nargs=-1)
@_filters
@click.option("--all", "all_", is_flag=True, help="Every record matching the filters.")
@click.option("--priority", type=click.Choice(PRIORITIES), help="New priority.")
@click.option("--dry-run", is_flag=True, help="Show what would be requeued.")
@click.option("--limit", type=int, help="Requeue at most this many.")
@click.option("--json", "as_json", is_flag=True)
def failures_requeue(operation_ids: tuple[str, ...], all_: bool, as_json: bool, **kw: Any) -> None:
    """Put dead letters back on their queues (attempts reset), by id or --all."""
    _need_selection(operation_ids, all_)
    result = QueueAdmin(_state().config).requeue(
        operation_ids=operation_ids or None, all=all_, **kw
    )
    _print_result("requeued", result, as_json)


@failures.command("purge")
@click.argument("operation_ids", nargs=-1)
@_filters
@click.option("--all", "all_", is_flag=True, help="Every record matching the filters.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted.")
@click.option("--limit", type=int)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def failures_purge(
    operation_ids: tuple[str, ...], all_: bool, yes: bool, as_json: bool, **kw: Any
) -> None:
    """Delete dead letters for good, by id or --all."""
    _need_selection(operation_ids, all_)
    admin = QueueAdmin(_state().config)
    ids = operation_ids or None
    if not (yes or kw["dry_run"]):
        list_name = "system_errors" if kw["system_errors"] else "failures"
        filters = {k: v for k, v in kw.items() if k not in ("dry_run", "limit")}
        count = len(ids) if ids else len(admin.list_dead_letters(limit=kw["limit"], **filters))
        click.confirm(f"Delete {'up to ' if ids else ''}{count} {list_name} records for good?",
                      abort=True)  # fmt: skip
    _print_result("purged", admin.purge(operation_ids=ids, all=all_, **kw), as_json)


@failures.command("export")
@_filters
@click.option("--limit", type=int)
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default stdout).")
def failures_export(limit: int | None, output: Any, system_errors: bool, **filters: Any) -> None:
    """Write dead letters as JSON lines, newest first."""
    admin = QueueAdmin(_state().config)
    for line in admin.export(system_errors=system_errors, limit=limit, **filters):
        output.write(line + "\n")


def _need_selection(operation_ids: tuple[str, ...], all_: bool) -> None:
    if not operation_ids and not all_:
        raise click.UsageError("give OPERATION_IDS, or --all (narrowed by the filters)")


def _print_result(verb: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
    else:
        would = f"would be {verb}" if result["dry_run"] else verb
        ids = ", ".join(result["operation_ids"][:20])
        more = " ..." if result["count"] > 20 else ""
        click.echo(f"{result['count']} {result['list']} records {would}{': ' if ids else ''}"
                   f"{ids}{more}")  # fmt: skip
        for skip in result["skipped"]:
            click.echo(f"skipped {skip['operation_id']}: {skip['reason']}", err=True)
        if result["not_found"]:
            click.echo(f"not found: {', '.join(result['not_found'])}", err=True)
    if result["not_found"]:
        sys.exit(1)


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
        "purge: %d waiting items of %s", sum(counts.values()), queue,
        extra={"action": "purge_queue", "count": sum(counts.values()), "queue": queue,
               "tiers": counts, **operator_identity()},
    )  # fmt: skip
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


# --- rendering ---------------------------------------------------------------------------------


def _status_view(health: dict[str, Any]) -> RenderableType:
    state = _state()
    where = f"{redact_url(state.url)} prefix {state.prefix}"
    if not health["redis_connected"]:
        return Text(f"Redis {where}: NOT ANSWERING ({health['error']})", style="bold red")
    workers, totals, stats = health["workers"], health["totals"], health["queue_stats"]
    memory = health["used_memory_bytes"] / 1024 / 1024
    header = Text(f"Redis {where} | {health['server']} | memory {memory:.1f} MiB | "
                  f"latency {health['latency_ms']:.1f} ms\n{totals['queue_size']} waiting | "
                  f"workers {workers['count']} ({workers['active']} active) | "
                  f"checked {health['checked_at']}")  # fmt: skip
    table = Table()
    columns = ("queue", "high", "normal", "low", "in flight", "scheduled", "failed",
               "system errors", "oldest waiting")  # fmt: skip
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
    tiers = ("high", "normal", "low")
    for name, s in stats.items():
        counts = (s[f] for f in (*tiers, "in_flight", "scheduled_jobs", "failed_jobs",
                                 "system_errors"))  # fmt: skip
        table.add_row(name, *map(str, counts), _age(s["oldest_age_s"]))
    table.add_section()
    table.add_row("total", *(str(sum(s[t] for s in stats.values())) for t in tiers),
                  *(str(totals[f]) for f in ("in_flight", "scheduled_jobs", "failed_jobs",
                                             "system_errors")), "")  # fmt: skip
    return Group(header, table)


def _workers_table(found: list[dict[str, Any]]) -> Table:
    table = Table(title=f"workers ({len(found)})")
    columns = ("id", "host", "pid", "queues", "concurrency", "running", "done", "failed",
               "started (UTC)", "last seen")  # fmt: skip
    for column in columns:
        table.add_column(column, overflow="fold")
    for w in found:
        queues = w.get("queues")
        table.add_row(
            *(str(w.get(k)) for k in ("id", "host", "pid")),
            ",".join(queues) if isinstance(queues, list) else "*",
            *(str(w.get(k)) for k in ("concurrency", "running", "jobs_done", "jobs_failed")),
            *(str(w.get(k))[:19].replace("T", " ") for k in ("started_at", "last_seen")),
        )
    return table


def _pairs(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, default=str))
    return table


def _time(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return str(epoch)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))  # UTC


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"
