"""``queue-system scheduled``: items enqueued with ``delay=``/``run_at=``, soonest first."""

from __future__ import annotations

import click

from queue_system.cli.render import Column, print_json, print_table, utc_iso
from queue_system.cli.state import current_state
from queue_system.ops.admin import QueueAdmin

_COLUMNS = (
    Column(header="next run (UTC)", wrap=True),
    Column(header="queue", wrap=True),
    Column(header="priority", drop_rank=2),
    Column(header="operation"),
    Column(header="processor", drop_rank=3),
    Column(header="expires (UTC)", drop_rank=1),
)


@click.command()
@click.option("--queue", "queue_name", default=None, help="Only this queue.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Most items to list."
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--wide", is_flag=True, help="Every column, however wide.")
def scheduled(queue_name: str | None, limit: int, as_json: bool, wide: bool) -> None:
    """Upcoming items (enqueued with delay= or run_at=), soonest first.

    Counts per queue are in `status`; retries waiting for their backoff are not listed here.
    """
    found = QueueAdmin(current_state().config).list_scheduled(queue_name, limit)
    if as_json:
        print_json(found)
        return
    rows = [
        [
            utc_iso(item["next_run_at"]),
            item["queue_name"] or "?",
            item["priority"] or "?",
            item["operation_id"] or "?",
            item["processor"] or "?",
            utc_iso(item["expires_at"]),
        ]
        for item in found
    ]
    print_table(_COLUMNS, rows, title="scheduled", wide=wide, empty="nothing scheduled")
