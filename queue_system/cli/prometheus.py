"""``queue-system metrics``: expose the namespace to Prometheus (needs ``[prometheus]``).

Serves ``/metrics`` (text exposition format) on ``--host``/``--port``; every scrape reads
Redis (see :mod:`queue_system.ops.prometheus` for the names and the cost). ``--once`` prints
one scrape and exits (for a cron job, or to look).
"""

from __future__ import annotations

import threading

import click

from queue_system.cli.state import current_state, where

DEFAULT_PORT = 9700
MISSING_EXTRA = "metrics need the [prometheus] extra: pip install 'queue_system[prometheus]'"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--once", is_flag=True, help="Print one scrape to stdout and exit.")
def metrics(host: str, port: int, once: bool) -> None:
    """Serve Prometheus metrics for the namespace (depths, dead letters, workers, counters)."""
    try:
        from prometheus_client import start_http_server

        from queue_system.ops.prometheus import exposition, make_registry
    except ImportError as exc:
        raise click.ClickException(f"{MISSING_EXTRA} ({exc})") from None
    registry = make_registry(current_state().config)
    if once:
        click.echo(exposition(registry).decode(), nl=False)
        return
    server, _ = start_http_server(port, addr=host, registry=registry)
    click.echo(f"metrics for {where()} at http://{host}:{server.server_port}/metrics", err=True)
    try:
        threading.Event().wait()  # serve until Ctrl-C / SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
