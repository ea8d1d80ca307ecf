"""``queue-system queues`` (list, forget) and ``queue-system purge``: queue names and their
waiting items."""

from __future__ import annotations

import logging

import click

from queue_system.cli.render import Column, print_json, print_table, utc_iso
from queue_system.cli.state import current_state
from queue_system.core.types import PRIORITIES
from queue_system.ops.admin import QueueAdmin
from queue_system.ops.audit import operator_identity
from queue_system.producer.sync import QueueManager

_COLUMNS = (
    Column(header="queue"),
    *(Column(header=p, justify="right", drop_rank=3 + i) for i, p in enumerate(PRIORITIES)),
    Column(header="waiting", justify="right"),
    Column(header="in flight", justify="right"),
    Column(header="scheduled", justify="right", drop_rank=2),
    Column(header="last activity (UTC)", drop_rank=1),
    Column(header="paused", drop_rank=6),
)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--wide", is_flag=True, help="Every column, however wide.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """Registered queue names with their depth and last activity (`queues forget NAME`).

    A name registers on its first enqueue, and counts towards max_queues until it is
    forgotten, or until it has been idle (nothing waiting, nothing finished) for longer than
    backup_ttl, when workers drop it by themselves. Last activity is when a worker's pass
    (every minute) last saw the queue in use.
    """
    if ctx.invoked_subcommand is not None:
        return
    found = QueueAdmin(current_state().config).list_queues()
    if as_json:
        print_json(found)
        return
    rows = [
        [
            q["name"],
            *(str(q[p]) for p in PRIORITIES),
            str(q["waiting"]),
            str(q["in_flight"]),
            str(q["scheduled"]),
            utc_iso(q["last_activity"]),
            ", ".join(q["paused"]) or "-",
        ]
        for q in found
    ]
    print_table(_COLUMNS, rows, title="queues", wide=wide, empty="no queues registered")


@queues.command("forget")
@click.argument("name")
def forget(name: str) -> None:
    """Remove the empty queue NAME from the registry (exit 1 if unknown or not empty)."""
    try:
        QueueAdmin(current_state().config).forget_queue(name)
    except ValueError as exc:  # unknown or not empty: the message says which
        raise click.ClickException(str(exc)) from None
    click.echo(f"forgot queue {name}")


@click.command()
@click.argument("queue")
@click.option("--priority", type=click.Choice(PRIORITIES), help="One tier (default: all).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(queue: str, priority: str | None, yes: bool) -> None:
    """Delete every waiting item of QUEUE (in-flight and delayed items are untouched).

    Exits 1 if no queue of that name is registered.
    """
    config = current_state().config
    known = QueueAdmin(config).queue_names()
    if queue not in known:
        listing = ", ".join(known) or "none"
        raise click.ClickException(f"unknown queue {queue!r} (registered: {listing})")
    tiers = [priority] if priority else list(PRIORITIES)
    if not yes:
        click.confirm(f"Delete every waiting item of {queue} ({', '.join(tiers)})?", abort=True)
    manager = QueueManager(config)
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
