"""How the ``queue-system`` command shows things: the console, JSON output and rich tables.

Pure rendering: every function takes the data to show and returns a renderable or prints it;
none reads Redis or the command line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from queue_system.core.types import HealthSnapshot, WorkerInfo


def make_console() -> Console:
    """A console for stdout."""
    # Piped output (files, less, CI logs) is not wrapped at 80 columns: wide tables stay whole.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 160)
    return Console(width=width, highlight=False)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (anything not JSON as its str)."""
    click.echo(json.dumps(value, indent=2, default=str))


_TIERS = ("high", "normal", "low")
_ELSEWHERE = ("in_flight", "scheduled_jobs", "failed_jobs", "system_errors")
_STATUS_COLUMNS = (
    "queue",
    *_TIERS,
    "in flight",
    "scheduled",
    "failed",
    "system errors",
    "oldest waiting",
)


def status_view(health: HealthSnapshot, where: str) -> RenderableType:
    """The ``status`` view of a health snapshot; ``where`` names the server and prefix."""
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
    table = Table()
    for i, column in enumerate(_STATUS_COLUMNS):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
    rows: dict[str, dict[str, Any]] = {n: dict(s) for n, s in health["queue_stats"].items()}
    for name, row in rows.items():
        counts = [str(row[f]) for f in (*_TIERS, *_ELSEWHERE)]
        table.add_row(name, *counts, age(row["oldest_age_s"]))
    table.add_section()
    tier_totals = [str(sum(row[t] for row in rows.values())) for t in _TIERS]
    total_fields: dict[str, Any] = dict(totals)
    table.add_row("total", *tier_totals, *(str(total_fields[f]) for f in _ELSEWHERE), "")
    return Group(header, table)


def workers_table(found: Sequence[WorkerInfo]) -> Table:
    """One row per live worker."""
    table = Table(title=f"workers ({len(found)})")
    columns = ["id", "host", "pid", "queues", "concurrency", "running", "done", "failed"]
    for column in [*columns, "started (UTC)", "last seen"]:
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
