"""How the ``queue-system`` command shows things: the console, JSON output and rich tables.

Pure rendering: every function takes the data to show and returns a renderable or prints it;
none reads Redis or the command line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from queue_system.core.types import HealthSnapshot, WorkerInfo

WIDE_WIDTH = 1000  # columns of a --wide console: tables keep every column and never wrap


def make_console(*, wide: bool = False) -> Console:
    """A console for stdout: the terminal's width, ``$COLUMNS`` (else 160) when piped."""
    if wide:
        width: int | None = WIDE_WIDTH
    elif sys.stdout.isatty():
        width = None  # rich reads the terminal (and $COLUMNS)
    else:  # piped output (files, less, CI logs) is not cut at 80 columns
        width = int(os.environ.get("COLUMNS") or 160)
    return Console(width=width, highlight=False)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (anything not JSON as its str)."""
    click.echo(json.dumps(value, indent=2, default=str))


@dataclass(frozen=True, kw_only=True)
class Column:
    """A table column; ``drop_rank`` > 0 may be left out when the table is too wide (the
    highest rank first); 0 is always shown (ids, names, the counts a view is about).
    ``wrap``: its cells may wrap onto more lines (times, queue names, never ids) when the
    always-shown columns are wider than the terminal."""

    header: str
    justify: JustifyMethod = "left"
    drop_rank: int = 0
    wrap: bool = False


def fitted_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str] | None],
    *,
    width: int | None,
    title: str | None = None,
) -> Table:
    """A table of ``rows`` (None: a section line) no wider than ``width`` where leaving out
    columns can achieve it: the always-shown ones, then each other column, most useful
    (lowest ``drop_rank``) first, if it still fits. ``width`` None keeps every column. Cells
    are never cut, so ids stay whole and can be copied; those of ``wrap`` columns wrap when
    the always-shown columns alone are too wide."""
    if width is None:
        return _table(columns, rows, range(len(columns)), title)
    shown = [i for i, c in enumerate(columns) if c.drop_rank == 0]
    optional = sorted(
        (i for i, c in enumerate(columns) if c.drop_rank), key=lambda i: columns[i].drop_rank
    )
    for i in optional:
        if _width(_table(columns, rows, sorted([*shown, i]), title)) <= width:
            shown.append(i)
    return _table(columns, rows, sorted(shown), title)


def print_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    title: str,
    wide: bool,
    empty: str,
) -> None:
    """Print ``rows`` as a :func:`fitted_table` titled ``"<title> (<count>)"``, fitted to the
    terminal unless ``wide``; with no rows, also say ``empty`` on stderr (the table's header
    alone reads as a failure)."""
    console = make_console(wide=wide)
    width = None if wide else console.width
    console.print(fitted_table(columns, rows, title=f"{title} ({len(rows)})", width=width))
    if not rows:
        click.echo(empty, err=True)


def _table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str] | None],
    shown: Iterable[int],
    title: str | None,
) -> Table:
    table = Table(title=title)
    indexes = list(shown)
    for i in indexes:
        column = columns[i]
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
        )
    for row in rows:
        if row is None:
            table.add_section()
        else:
            table.add_row(*(row[i] for i in indexes))
    return table


def _width(table: Table) -> int:
    console = Console(width=WIDE_WIDTH)
    return Measurement.get(console, console.options, table).maximum


_TIERS = ("high", "normal", "low")
_ELSEWHERE = ("in_flight", "scheduled_jobs", "failed_jobs", "system_errors")
_STATUS_COLUMNS = (
    Column(header="queue"),
    *(Column(header=tier, justify="right") for tier in _TIERS),
    Column(header="in flight", justify="right", drop_rank=1),
    Column(header="scheduled", justify="right", drop_rank=3),
    Column(header="failed", justify="right", drop_rank=2),
    Column(header="system errors", justify="right", drop_rank=5),
    Column(header="oldest waiting", justify="right", drop_rank=4),
)


def status_view(health: HealthSnapshot, where: str, *, width: int | None = None) -> RenderableType:
    """The ``status`` view of a health snapshot; ``where`` names the server and prefix;
    the table fits ``width`` columns (None: every column)."""
    totals, workers = health["totals"], health["workers"]
    if not health["redis_connected"] or totals is None or workers is None:
        return Text(f"Redis {where}: NOT ANSWERING ({health['error']})", style="bold red")
    memory_mib = (health["used_memory_bytes"] or 0) / 1024 / 1024
    header = Text(
        f"Redis {where} | {health['server']} | memory {memory_mib:.1f} MiB | "
        f"latency {health['latency_ms'] or 0:.1f} ms\n"
        f"{totals['queue_size']} waiting | "
        f"workers {workers['count']} ({workers['active']} active) | "
        f"checked {health['checked_at']}"
    )
    stats: dict[str, dict[str, Any]] = {n: dict(s) for n, s in health["queue_stats"].items()}
    rows: list[Sequence[str] | None] = [
        [
            name + _paused_mark(row.get("paused") or []),
            *(str(row[f]) for f in (*_TIERS, *_ELSEWHERE)),
            age(row["oldest_age_s"]),
        ]
        for name, row in stats.items()
    ]
    total_fields: dict[str, Any] = dict(totals)
    tier_totals = [str(sum(row[t] for row in stats.values())) for t in _TIERS]
    rows += [None, ["total", *tier_totals, *(str(total_fields[f]) for f in _ELSEWHERE), ""]]
    return Group(header, fitted_table(_STATUS_COLUMNS, rows, width=width))


def _paused_mark(tiers: Sequence[str]) -> str:
    """The status mark of a queue with paused ``tiers``: " (paused)" or " (paused: high)"."""
    if not tiers:
        return ""
    return " (paused)" if len(tiers) == len(_TIERS) else f" (paused: {', '.join(tiers)})"


_WORKER_COLUMNS = (
    Column(header="id"),
    Column(header="host", drop_rank=8),  # both are in the id too
    Column(header="pid", drop_rank=7),
    Column(header="queues", drop_rank=2),
    Column(header="concurrency", justify="right", drop_rank=4),
    Column(header="running", justify="right"),
    Column(header="done", justify="right", drop_rank=1),
    Column(header="failed", justify="right", drop_rank=1),
    Column(header="started (UTC)", drop_rank=6),
    Column(header="last seen", drop_rank=5),
    Column(header="supervisor", drop_rank=1),  # long; the first to go
)


def workers_table(found: Sequence[WorkerInfo], *, width: int | None = None) -> Table:
    """One row per live worker, fitting ``width`` columns (None: every column)."""
    rows: list[Sequence[str] | None] = []
    for w in found:
        queues = w.get("queues")
        rows.append(
            [
                *(str(w.get(k)) for k in ("id", "host", "pid")),
                ",".join(queues) if isinstance(queues, list) else "*",
                *(str(w.get(k)) for k in ("concurrency", "running", "jobs_done", "jobs_failed")),
                *(str(w.get(k))[:19].replace("T", " ") for k in ("started_at", "last_seen")),
                w.get("supervisor") or "-",
            ]
        )
    return fitted_table(_WORKER_COLUMNS, rows, width=width, title=f"workers ({len(found)})")


def pairs_table(title: str, rows: dict[str, Any]) -> Table:
    """A two-column field/value table (non-strings shown as JSON)."""
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, default=str))
    return table


def utc_time(epoch: Any) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` UTC (anything else as is)."""
    if not isinstance(epoch, (int, float)):
        return str(epoch)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))  # UTC


def utc_iso(text: str | None) -> str:
    """An ISO 8601 UTC time as ``YYYY-MM-DD HH:MM:SS``; None as ``-``."""
    return text[:19].replace("T", " ") if text else "-"


def truncate(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, ending with an ellipsis if cut."""
    return text if len(text) <= chars else text[: chars - 1] + "…"


def age(seconds: float | None) -> str:
    """A duration as ``12.5s``, ``3.0m``, ``1.2h`` or ``2.0d``; None as ``-``."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"
