"""Job control in the CLI: the ``queue-system cancel ID...`` command, and the running
operations (with progress and cancel marks) that ``monitor`` shows.

One :meth:`QueueManager.cancel` call per id; one line per id: ``<id> <answer>`` (``cancelled``,
``cancelling``, ``already_finished`` or ``not_found``). Exit status 1 when any id was not
found, else 0 (a finished operation is not an error: there is nothing left to cancel).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from queue_system.cli.render import Column, fitted_table, print_json, truncate
from queue_system.cli.state import current_state
from queue_system.core.types import RunningOperation
from queue_system.producer.sync import QueueManager

PROGRESS_CHARS = 40  # of each progress value in the monitor's running table
_RUNNING_COLUMNS = (
    Column(header="running operation"),
    Column(header="queue", drop_rank=2),
    Column(header="worker", drop_rank=3),
    Column(header="started (UTC)", drop_rank=1),
    Column(header="progress", wrap=True),
    Column(header="cancel", drop_rank=4),
)


@click.command()
@click.argument("operation_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print {id: answer} as JSON.")
def cancel(operation_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel operations: waiting or scheduled ones never run; running ones are stopped by
    their worker and end cancelled (exit 1 if any id is unknown)."""
    manager = QueueManager(current_state().config)
    answers = {op_id: manager.cancel(op_id) for op_id in operation_ids}
    if as_json:
        print_json(answers)
    else:
        for op_id, answer in answers.items():
            click.echo(f"{op_id} {answer}")
    if "not_found" in answers.values():
        sys.exit(1)


def running_views(rows: list[RunningOperation], *, width: int | None) -> list[Table]:
    """The monitor's table of running operations (nothing when none runs)."""
    if not rows:
        return []
    cells: list[Sequence[str] | None] = [
        [
            row["operation_id"],
            row["queue_name"] or "",
            row["worker"] or "",
            (row["started_at"] or "")[:19].replace("T", " "),
            ""
            if row["progress"] is None
            else truncate(json.dumps(row["progress"]), PROGRESS_CHARS),
            "requested" if row["cancel_requested_at"] else "",
        ]
        for row in rows
    ]
    return [fitted_table(_RUNNING_COLUMNS, cells, width=width)]


def _progress_cell(progress: Any) -> str:
    return "" if progress is None else truncate(json.dumps(progress), PROGRESS_CHARS)
