"""``queue-system pause|resume QUEUE`` and ``queue-system limits`` (list, set, clear): what
workers may claim, changed at runtime for every worker at once."""

from __future__ import annotations

import click

from queue_system.cli.render import Column, print_json, print_table
from queue_system.cli.state import current_state
from queue_system.core.limits import QueueLimits, parse_rate
from queue_system.core.types import PRIORITIES
from queue_system.ops.admin import QueueAdmin

_PRIORITY = click.option(
    "--priority", type=click.Choice(PRIORITIES), help="One tier (default: every tier)."
)
_COLUMNS = (
    Column(header="queue"),
    Column(header="max concurrency", justify="right"),
    Column(header="slots used", justify="right", drop_rank=2),
    Column(header="rate limit", justify="right"),
    Column(header="claims in window", justify="right", drop_rank=1),
    Column(header="source", drop_rank=3),
    Column(header="paused", drop_rank=4),
)


@click.command()
@click.argument("queue")
@_PRIORITY
def pause(queue: str, priority: str | None) -> None:
    """Stop every worker claiming QUEUE (producers keep enqueueing; `resume` undoes it)."""
    _switch(queue, priority, paused=True)


@click.command()
@click.argument("queue")
@_PRIORITY
def resume(queue: str, priority: str | None) -> None:
    """Let workers claim QUEUE again."""
    _switch(queue, priority, paused=False)


def _switch(queue: str, priority: str | None, *, paused: bool) -> None:
    """Pause or resume ``queue`` (one tier, or all) and say which tiers."""
    admin = QueueAdmin(current_state().config)
    tiers = (admin.pause if paused else admin.resume)(queue, priority)
    click.echo(f"{'paused' if paused else 'resumed'} {queue} ({', '.join(tiers)})")
    _note_unregistered(admin, queue)


def _note_unregistered(admin: QueueAdmin, queue: str) -> None:
    """Say so when nothing was ever enqueued to ``queue``: a typo must not look like success.
    Not an error: a queue may be paused or limited ahead of its first enqueue."""
    known = admin.queue_names()
    if queue not in known:
        click.echo(
            f"note: no queue {queue!r} is registered yet (known: {', '.join(known) or 'none'}); "
            "this applies from its first enqueue",
            err=True,
        )


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--wide", is_flag=True, help="Every column, however wide.")
@click.pass_context
def limits(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """Queue limits and paused tiers (`limits set QUEUE ...`, `limits clear QUEUE`).

    A value set here (source "runtime") wins over QueueConfig(limits=...) until `limits
    clear`; after that, the next worker to start writes its config's value (source "config").
    """
    if ctx.invoked_subcommand is not None:
        return
    admin = QueueAdmin(current_state().config)
    found, paused = admin.get_limits(), admin.paused()
    if as_json:
        print_json({"limits": found, "paused": paused})
        return
    rows = []
    for name in sorted(set(found) | set(paused)):
        info = found.get(name)
        rows.append(
            [
                name,
                str(info["max_concurrency"] or "-") if info else "-",
                str(info["slots"]) if info and info["max_concurrency"] else "-",
                (info["rate_limit"] or "-") if info else "-",
                str(info["recent_claims"]) if info and info["rate_limit"] else "-",
                info["source"] if info else "-",
                ", ".join(paused.get(name, [])) or "-",
            ]
        )
    print_table(_COLUMNS, rows, title="limits", wide=wide, empty="no queue has limits or is paused")


@limits.command("set")
@click.argument("queue")
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=0),
    help="Items of QUEUE in flight at once across every worker (0: no cap).",
)
@click.option("--rate", help="At most N claims per window: N/s, N/m or N/h ('none': no limit).")
def set_limits(queue: str, max_concurrency: int | None, rate: str | None) -> None:
    """Set QUEUE's limits now, for every worker (an option not given keeps its value)."""
    if max_concurrency is None and rate is None:
        raise click.UsageError("give --max-concurrency and/or --rate")
    if rate is not None and rate.lower() != "none":
        try:
            parse_rate(rate)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rate") from None
    admin = QueueAdmin(current_state().config)
    current = admin.get_limits().get(queue)
    cap = current["max_concurrency"] if current else None
    rate_limit = current["rate_limit"] if current else None
    if max_concurrency is not None:
        cap = max_concurrency or None
    if rate is not None:
        rate_limit = None if rate.lower() == "none" else rate
    new = QueueLimits(max_concurrency=cap, rate_limit=rate_limit)
    admin.set_limits(queue, new)
    click.echo(
        f"limits of {queue}: max concurrency {new.max_concurrency or 'none'}, "
        f"rate {new.rate_limit or 'none'} (runtime: wins over the config)"
    )
    _note_unregistered(admin, queue)


@limits.command("clear")
@click.argument("queue")
def clear_limits(queue: str) -> None:
    """Remove QUEUE's limits (a worker whose config declares some writes them at start)."""
    if QueueAdmin(current_state().config).clear_limits(queue):
        click.echo(f"cleared the limits of {queue}")
    else:
        click.echo(f"{queue} had no limits")
