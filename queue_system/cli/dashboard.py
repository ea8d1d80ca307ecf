"""``queue-system dashboard``: serve the web dashboard (needs the ``[web]`` extra).

Safe by default: binds to 127.0.0.1; always asks for a token (``--token``, else
``$QUEUE_SYSTEM_DASHBOARD_TOKEN``, else a new one printed as a login URL); refuses a
non-loopback ``--host`` unless the token was given (a generated one would only be on this
terminal, and a forgotten ``--host 0.0.0.0`` should not expose anything).
"""

from __future__ import annotations

import ipaddress
import sys

import click

from queue_system.cli.state import current_state, where

DEFAULT_PORT = 8700
# Also named in queue_system.web.auth (not imported here: the CLI works without the [web] extra).
TOKEN_ENV = "QUEUE_SYSTEM_DASHBOARD_TOKEN"  # noqa: S105 (a variable name)
MISSING_EXTRA = "the dashboard needs the [web] extra: pip install 'queue_system[web]'"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    help="Login token (prefer the env var: arguments show in ps). Default: a new random one, "
    "printed as a login URL.",
)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing.")
def dashboard(host: str, port: int, token: str | None, read_only: bool) -> None:
    """Serve the web dashboard: queues, operations, failures, workers, /metrics."""
    try:
        import uvicorn

        from queue_system.web import create_app
    except ImportError as exc:
        raise click.ClickException(f"{MISSING_EXTRA} ({exc})") from None
    if not is_loopback(host) and not token:
        raise click.UsageError(
            f"--host {host} is not a loopback address: give --token (or ${TOKEN_ENV}) "
            "so that nobody else on the network can use the dashboard"
        )
    app = create_app(current_state().config, token=token, read_only=read_only)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    login = f"{base}/login?token={app.state.token}" if not token else f"{base}/login"
    mode = " (read-only)" if read_only else ""
    click.echo(f"dashboard for {where()}{mode}: log in at {login}", err=True)
    sys.stderr.flush()
    # ws="none": the dashboard has no websockets (and old uvicorns warn on new websockets).
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, ws="none")
