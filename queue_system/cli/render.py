"""How the ``queue-system`` command shows things: the console, JSON output and rich tables.

Pure rendering: every function takes the data to show and returns a renderable or prints it;
none reads Redis or the command line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text


def make_console() -> Console:
    """A console for stdout."""
    # Piped output (files, less, CI logs) is not wrapped at 80 columns: wide tables stay whole.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 160)
    return Console(width=width, highlight=False)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (anything not JSON as its str)."""
    click.echo(json.dumps(value, indent=2, default=str))


def status_view(health: dict[str, Any], where: str) -> RenderableType:
    """The ``status`` view of a health dict; ``where`` names the server and prefix."""
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
        table.add_row(name, *map(str, counts), age(s["oldest_age_s"]))
    table.add_section()
    table.add_row("total", *(str(sum(s[t] for s in stats.values())) for t in tiers),
                  *(str(totals[f]) for f in ("in_flight", "scheduled_jobs", "failed_jobs",
                                             "system_errors")), "")  # fmt: skip
    return Group(header, table)


def workers_table(found: list[dict[str, Any]]) -> Table:
    """One row per live worker."""
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
