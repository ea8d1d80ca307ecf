"""``queue-system cron``: the periodic jobs the workers run, with their next and last run."""

from __future__ import annotations

import click

from queue_system.cli.render import Column, print_json, print_table, utc_iso
from queue_system.cli.state import current_state
from queue_system.ops.cron import list_schedules

_COLUMNS = (
    Column(header="name"),
    Column(header="schedule", wrap=True),
    Column(header="timezone", drop_rank=2),
    Column(header="queue", wrap=True),
    Column(header="next run (UTC)", wrap=True),
    Column(header="last run (UTC)", drop_rank=1),
    Column(header="state", wrap=True),
)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--wide", is_flag=True, help="Every column, however wide.")
def cron(as_json: bool, wide: bool) -> None:
    """Periodic jobs (config.cron) as the workers published them.

    Workers publish the schedules in their code at start and every 30 s. A schedule no live
    worker has refreshed for 90 s is "stale": removed from the code (it stays listed, and
    no longer runs) or no worker is running. The last run is the newest tick handled: fired,
    or skipped by the catch_up policy.
    """
    found = list_schedules(current_state().config)
    if as_json:
        print_json(found)
        return
    rows = [
        [
            s["name"],
            s["when"],
            s["timezone"],
            f"{s['queue_name']} ({s['priority']})",
            utc_iso(s["next_run"]) if not s["stale"] else "-",
            utc_iso(s["last_run"]),
            ("stale" if s["stale"] else "live") + (", claim open" if s["claim_open"] else ""),
        ]
        for s in found
    ]
    empty = "no schedules published (declare them with config.cron)"
    print_table(_COLUMNS, rows, title="schedules", wide=wide, empty=empty)
