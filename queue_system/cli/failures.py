"""The ``queue-system failures`` commands: list, show, requeue, purge and export dead letters.

Each command is one :class:`~queue_system.ops.admin.QueueAdmin` call on the namespace of the global
options; ``--system-errors`` switches every command from ``failures`` to ``system_errors``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from queue_system.cli.render import (
    Column,
    make_console,
    pairs_table,
    print_json,
    print_table,
    truncate,
    utc_time,
)
from queue_system.core.clock import SystemClock
from queue_system.core.types import PRIORITIES, DeadLetterReport
from queue_system.ops.admin import QueueAdmin

if TYPE_CHECKING:
    from queue_system.cli.state import State

F = TypeVar("F", bound=Callable[..., Any])
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MESSAGE_CHARS = 40  # of each error message in `failures list` (`failures show` has it all)
POSITIVE = click.IntRange(min=1)
_LIST_COLUMNS = (
    Column(header="at (UTC)", drop_rank=3),
    Column(header="operation"),
    Column(header="queue", drop_rank=2),
    Column(header="processor", drop_rank=4),
    Column(header="error", drop_rank=1),
    Column(header="runs", justify="right", drop_rank=5),
    Column(header="message", drop_rank=6),
)


@click.group()
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
@click.option("--limit", type=POSITIVE, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--wide", is_flag=True, help="Every column, however wide.")
@click.pass_obj
def failures_list(
    state: State, /, limit: int, as_json: bool, wide: bool, system_errors: bool, **filters: Any
) -> None:
    """Dead letters, newest first (at 80 columns the least useful columns are left out;
    ids are never cut)."""
    found = QueueAdmin(state.config).list_dead_letters(
        system_errors=system_errors, limit=limit, **filters
    )
    if as_json:
        print_json(found)
        return
    list_name = "system_errors" if system_errors else "failures"
    rows = []
    for r in found:
        error = r.get("error_type") if r.get("reason") == "failed" else r.get("reason")
        processor = str(r.get("processor")).rpartition(":")[2]
        cells = (r.get("operation_id"), r.get("queue"), processor, error, r.get("attempts"))
        message = truncate(str(r.get("message")), MESSAGE_CHARS)
        rows.append([utc_time(r.get("at")), *map(str, cells), message])
    empty = f"no {list_name} records match"
    print_table(_LIST_COLUMNS, rows, title=list_name, wide=wide, empty=empty)


@failures.command("show")
@click.argument("operation_id")
@click.option("--system-errors", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def failures_show(state: State, /, operation_id: str, system_errors: bool, as_json: bool) -> None:
    """One dead letter: why, every attempt with its traceback, and the original payload."""
    admin = QueueAdmin(state.config)
    record = admin.get_dead_letter(operation_id, system_errors)
    if record is None and not system_errors:  # an operator may not know which list holds it
        record = admin.get_dead_letter(operation_id, system_errors=True)
    if record is None:
        click.echo(f"no failure or system error {operation_id!r}", err=True)
        sys.exit(1)
    if as_json:
        print_json(record)
        return
    keys = (
        "operation_id",
        "reason",
        "error_type",
        "message",
        "queue",
        "priority",
        "processor",
        "attempts",
    )
    rows = {k: record.get(k) for k in keys} | {"at": utc_time(record.get("at"))}
    make_console().print(
        pairs_table("failure" if record.get("reason") == "failed" else "system error", rows)
    )
    for n, attempt in enumerate(record.get("history") or [], 1):
        # "rule" names what decided after this run (max_attempts, give_up_on:X, retry_after...).
        decided = f" [{attempt['rule']}]" if attempt.get("rule") else ""
        click.echo(
            f"--- attempt {n} at {utc_time(attempt.get('at'))}: "
            f"{attempt.get('error_type')}: {attempt.get('message')}{decided}"
        )
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
@click.option("--limit", type=POSITIVE, help="Requeue at most this many.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def failures_requeue(
    state: State, /, operation_ids: tuple[str, ...], all_: bool, as_json: bool, **kw: Any
) -> None:
    """Put dead letters back on their queues (attempts reset), by id or --all."""
    _need_selection(operation_ids, all_)
    result = QueueAdmin(state.config).requeue(operation_ids=operation_ids or None, all=all_, **kw)
    _print_result("requeued", result, as_json)


@failures.command("purge")
@click.argument("operation_ids", nargs=-1)
@_filters
@click.option("--all", "all_", is_flag=True, help="Every record matching the filters.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted.")
@click.option("--limit", type=POSITIVE)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def failures_purge(
    state: State, /, operation_ids: tuple[str, ...], all_: bool, yes: bool, as_json: bool, **kw: Any
) -> None:
    """Delete dead letters for good, by id or --all."""
    _need_selection(operation_ids, all_)
    admin = QueueAdmin(state.config)
    ids = operation_ids or None
    if not (yes or kw["dry_run"]):
        list_name = "system_errors" if kw["system_errors"] else "failures"
        filters = {k: v for k, v in kw.items() if k not in ("dry_run", "limit")}
        count = len(ids) if ids else len(admin.list_dead_letters(limit=kw["limit"], **filters))
        click.confirm(
            f"Delete {'up to ' if ids else ''}{count} {list_name} records for good?", abort=True
        )
    _print_result("purged", admin.purge(operation_ids=ids, all=all_, **kw), as_json)


@failures.command("export")
@_filters
@click.option("--limit", type=POSITIVE)
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default stdout).")
@click.pass_obj
def failures_export(
    state: State, /, limit: int | None, output: Any, system_errors: bool, **filters: Any
) -> None:
    """Write dead letters as JSON lines, newest first."""
    admin = QueueAdmin(state.config)
    for line in admin.export(system_errors=system_errors, limit=limit, **filters):
        output.write(line + "\n")


def _need_selection(operation_ids: tuple[str, ...], all_: bool) -> None:
    if not operation_ids and not all_:
        raise click.UsageError("give OPERATION_IDS, or --all (narrowed by the filters)")


def _print_result(verb: str, result: DeadLetterReport, as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        would = f"would be {verb}" if result["dry_run"] else verb
        ids = ", ".join(result["operation_ids"][:20])
        more = " ..." if result["count"] > 20 else ""
        listed = f": {ids}{more}" if ids else ""
        click.echo(f"{result['count']} {result['list']} records {would}{listed}")
        for skip in result["skipped"]:
            click.echo(f"skipped {skip['operation_id']}: {skip['reason']}", err=True)
        if result["not_found"]:
            click.echo(f"not found: {', '.join(result['not_found'])}", err=True)
    if result["not_found"]:
        sys.exit(1)
