"""The dashboard: a Starlette app over one namespace (``create_app(config)``).

Pages: overview (every queue x tier, and the last hour's throughput and success rate), a
queue's waiting items (paginated), one operation, failures and system errors (filter, requeue,
purge) and live workers; ``/metrics`` for Prometheus. Pages refresh their live part by small
fetches of server-rendered fragments (``static/dashboard.js``). Every request needs the token
(see :mod:`queue_system.web.auth`); every action is a POST with a CSRF token, refused in
read-only mode, and goes through :class:`~queue_system.ops.admin.QueueAdmin`, which writes the
same audit record as the CLI.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import jinja2
import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from queue_system.config import QueueConfig
from queue_system.core.clock import iso_utc
from queue_system.errors import QueueUnavailableError
from queue_system.ops.admin import QueueAdmin
from queue_system.ops.history import DEFAULT_SAMPLE_INTERVAL_S, HISTORY_WINDOW_S, CounterHistory
from queue_system.producer.sync import QueueManager
from queue_system.web import seams, views
from queue_system.web.auth import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    TOKEN_ENV_VAR,
    TokenAuth,
    action_form,
    generate_token,
)
from queue_system.web.dead_letters import dead_letter_routes
from queue_system.web.render import path_for, render
from queue_system.web.schedules import schedule_routes

logger = logging.getLogger(__name__)

_PUBLIC_PATHS = ("/login", "/static/")
_SECURITY_HEADERS = {
    # Everything the pages need ships in the package: no inline script, no other origin.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the login URL carries the token
    "cache-control": "no-store",
}


def create_app(
    config: QueueConfig,
    *,
    token: str | None = None,
    read_only: bool = False,
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
) -> Starlette:
    """The dashboard app for the namespace of ``config`` (mount it, or serve it with uvicorn).

    Args:
        config: the namespace and Redis connection.
        token: the secret operators log in with; default ``$QUEUE_SYSTEM_DASHBOARD_TOKEN``,
            else a new random one (read it from ``app.state.token``; the login URL is
            ``<mount>/login?token=<token>``).
        read_only: show everything, change nothing (actions answer 403).
        sample_interval_s: seconds between samples of the shared counters for the chart.

    Returns:
        A Starlette app; ``app.state`` holds ``token``, ``auth``, ``read_only``, ``history``.
    """
    token = token or os.environ.get(TOKEN_ENV_VAR) or generate_token()
    history = CounterHistory(config, interval_s=sample_interval_s)
    templates = Jinja2Templates(
        env=jinja2.Environment(
            loader=jinja2.PackageLoader("queue_system.web", "templates"), autoescape=True
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(_sample_forever, history)
            yield
            group.cancel_scope.cancel()

    templates.env.filters["utc"] = iso_utc
    templates.env.filters["utc_short"] = lambda at: iso_utc(at)[:19].replace("T", " ")
    app = Starlette(
        routes=[
            Route("/login", _login, methods=["GET", "POST"], name="login"),
            Route("/logout", _logout, methods=["POST"], name="logout"),
            Route("/", _overview, name="overview"),
            Route("/fragments/overview", _overview_fragment, name="overview_fragment"),
            Route("/queues/{name}/{priority}", _queue, name="queue"),
            Route("/operations/{operation_id}", _operation, name="operation"),
            Route(
                "/fragments/operations/{operation_id}",
                _operation_fragment,
                name="operation_fragment",
            ),
            Route(
                "/operations/{operation_id}/cancel",
                _cancel,
                methods=["POST"],
                name="cancel_operation",
            ),
            *dead_letter_routes(),
            *schedule_routes(),
            Route("/workers", _workers, name="workers"),
            Route("/fragments/workers", _workers_fragment, name="workers_fragment"),
            Route("/metrics", _metrics, name="metrics"),
            Mount("/static", StaticFiles(packages=[("queue_system.web", "static")]), name="static"),
        ],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_guard)],
        exception_handlers={
            redis.RedisError: _redis_unavailable,
            QueueUnavailableError: _redis_unavailable,
        },
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.token = token
    app.state.auth = TokenAuth(token)
    app.state.read_only = read_only
    app.state.history = history
    app.state.templates = templates
    app.state.admin = QueueAdmin(config)
    app.state.manager = QueueManager(config)
    app.state.registry = None  # the Prometheus registry, built on the first scrape
    return app


async def _sample_forever(history: CounterHistory) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(history.sample)
        except Exception:  # Redis down: the chart has a gap, the dashboard keeps serving
            logger.warning("dashboard: could not sample the counters", exc_info=True)
        await anyio.sleep(history.interval_s)


async def _redis_unavailable(request: Request, exc: Exception) -> Response:
    """A page whose reads failed because Redis did not answer: 503, and the page can retry."""
    logger.warning("dashboard: Redis did not answer for %s: %s", request.url.path, exc)
    return PlainTextResponse(
        f"Redis did not answer ({type(exc).__name__}); try again in a moment", status_code=503
    )


async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every request but the login page and static files needs a session or the token."""
    auth: TokenAuth = request.app.state.auth
    path = request.url.path[len(request.scope.get("root_path", "")) :] or "/"
    session = auth.session_of(request)
    request.state.session = session
    if not path.startswith(_PUBLIC_PATHS) and session is None and not auth.bearer_ok(request):
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            response: Response = RedirectResponse(path_for(request, "login"), status_code=303)
        else:
            response = PlainTextResponse("log in first: /login", status_code=401)
    else:
        response = await call_next(request)
    response.headers.update(_SECURITY_HEADERS)
    return response


async def _login(request: Request) -> Response:
    auth: TokenAuth = request.app.state.auth
    given = request.query_params.get("token")
    if request.method == "POST":
        value = (await request.form()).get("token")
        given = value if isinstance(value, str) else ""
    if given is None:
        return render(request, "login.html", title="Log in")
    if not auth.token_matches(given):
        return render(request, "login.html", status_code=403, title="Log in", error=True)
    response = RedirectResponse(path_for(request, "overview"), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(),
        max_age=SESSION_MAX_AGE_S,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _logout(request: Request) -> Response:
    response = RedirectResponse(path_for(request, "login"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=request.scope.get("root_path") or "/")
    return response


def overview_context(request: Request) -> dict[str, Any]:
    state = request.app.state
    config: QueueConfig = state.config
    history: CounterHistory = state.history
    health = state.admin.get_system_health()
    chart = None
    if health["redis_connected"]:
        history.sample()  # one EVALSHA; a no-op while the newest sample is recent
        intervals, now = history.intervals(), config.clock.time()
        # The x axis spans the hour, or the time since sampling began when that is shorter.
        window_s = min(HISTORY_WINDOW_S, now - intervals[0].start) if intervals else 1.0
        chart = views.chart(intervals, max(window_s, 1.0), now)
    return {
        "health": health,
        "chart": chart,
        "paused": seams.paused_queues(config) or set(),
        "priorities": ("high", "normal", "low"),
        "tiers": views.tier_rows(health, seams.counters(config))
        if health["redis_connected"]
        else [],
    }


def _overview(request: Request) -> Response:
    return render(request, "overview.html", title="Overview", **overview_context(request))


def _overview_fragment(request: Request) -> Response:
    return render(request, "_overview.html", **overview_context(request))


def _queue(request: Request) -> Response:
    config: QueueConfig = request.app.state.config
    name, priority = request.path_params["name"], request.path_params["priority"]
    try:
        config.keys.queue(name, priority)
        page = int(request.query_params.get("page", "1"))
        per_page = int(request.query_params.get("per_page", str(views.DEFAULT_PER_PAGE)))
    except ValueError as exc:
        return PlainTextResponse(f"bad request: {exc}", status_code=400)
    window = views.queue_page(config, name, priority, page=page, per_page=per_page)
    return render(request, "queue.html", title=f"Queue {name}", q=window)


def operation_context(request: Request) -> dict[str, Any] | None:
    state = request.app.state
    operation_id = request.path_params["operation_id"]
    operation = state.manager.get_operation(operation_id)
    status = operation["status"] if operation else None
    # Where its dead letter is: the status says which list; without a status record, look
    # in both (each is a capped list: O(records) at most).
    lists = {"failed": [False], "error": [True], None: [False, True]}.get(status, [])
    record, kind = None, None
    for system_errors in lists:
        record = state.admin.get_dead_letter(operation_id, system_errors=system_errors)
        if record is not None:
            kind = "system-errors" if system_errors else "failures"
            break
    if operation is None and record is None:
        return None
    return {
        "operation_id": operation_id,
        "op": operation,
        "record": record,
        "record_kind": kind,
        "progress": seams.progress(dict(operation)) if operation else None,
        "can_cancel": seams.can_cancel(state.config),
        "pretty": views.pretty_json,
    }


def _operation(request: Request) -> Response:
    context = operation_context(request)
    if context is None:
        return render(
            request,
            "missing.html",
            status_code=404,
            title="Unknown operation",
            operation_id=request.path_params["operation_id"],
        )
    return render(request, "operation.html", title="Operation", **context)


def _operation_fragment(request: Request) -> Response:
    context = operation_context(request)
    if context is None:
        return PlainTextResponse("unknown operation", status_code=404)
    return render(request, "_operation.html", **context)


async def _cancel(request: Request) -> Response:
    """Cancel one operation (shown once :func:`seams.can_cancel` says the feature exists)."""
    state = request.app.state
    checked = await action_form(request)
    if isinstance(checked, Response):
        return checked
    if not seams.can_cancel(state.config):
        return PlainTextResponse("cancelling is not available in this version", status_code=404)
    operation_id = request.path_params["operation_id"]
    await run_in_threadpool(seams.cancel_operation, state.config, operation_id)
    return RedirectResponse(path_for(request, "operation", operation_id=operation_id), 303)


def workers_context(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        "workers": state.manager.get_workers(),
        "running": views.running_by_worker(state.config),
    }


def _workers(request: Request) -> Response:
    return render(request, "workers.html", title="Workers", **workers_context(request))


def _workers_fragment(request: Request) -> Response:
    return render(request, "_workers.html", **workers_context(request))


def _metrics(request: Request) -> Response:
    from queue_system.ops.prometheus import CONTENT_TYPE, exposition, make_registry

    state = request.app.state
    if state.registry is None:
        state.registry = make_registry(state.config)
    return Response(exposition(state.registry), media_type=CONTENT_TYPE)
