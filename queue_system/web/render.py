"""Rendering a dashboard template with what every page needs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from queue_system.web.auth import CSRF_FIELD

LIVE_REFRESH_MS = 2000  # how often a page fetches its live fragment


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """Render template ``name`` with what every page needs (CSRF token, read-only flag)."""
    state = request.app.state
    session = request.state.session
    context.setdefault("title", "queue_system")
    context.update(
        csrf_field=CSRF_FIELD,
        csrf=state.auth.csrf_token(session) if session else "",
        read_only=state.read_only,
        live_ms=LIVE_REFRESH_MS,
        prefix=state.config.keys.prefix,
        path_for=lambda route, **params: path_for(request, route, **params),
    )
    templates: Jinja2Templates = state.templates
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def path_for(request: Request, route: str, **params: Any) -> str:
    """The path (with the mount's root path, without scheme and host) of a named route: links
    stay right behind a reverse proxy that rewrites the host."""
    # The app's own router, not scope["router"]: middleware runs before the router sets it.
    return str(request.scope.get("root_path", "")) + str(request.app.url_path_for(route, **params))
