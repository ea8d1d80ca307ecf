"""The schedules and limits page: cron schedules, paused tiers, queue limits and scheduled items.

Read-only but for pause / resume of one tier: a POST with the session's CSRF token, refused in
read-only mode, through :class:`~queue_system.ops.admin.QueueAdmin` (which writes the same
audit record as ``queue-system pause`` / ``resume``). Cost: the cron hashes (one entry per
schedule), the paused set, the limits hash with one SMEMBERS + ZCOUNT per limited queue, one
health snapshot (see :mod:`queue_system.ops.health`) and the first ``UPCOMING`` scheduled items.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from queue_system.core.checks import validate_priority, validate_queue_name
from queue_system.core.types import PRIORITIES
from queue_system.ops.admin import QueueAdmin
from queue_system.ops.cron import list_schedules
from queue_system.ops.scheduled import list_scheduled
from queue_system.web.auth import action_form
from queue_system.web.render import path_for, render

UPCOMING = 20  # scheduled items listed, soonest first
TIER_ACTIONS = ("pause", "resume")


def schedule_routes() -> list[Route]:
    """The routes of the schedules and limits page."""
    return [
        Route("/schedules", _page, name="schedules"),
        Route("/schedules/tiers", _tier_action, methods=["POST"], name="tier_action"),
    ]


def _context(request: Request) -> dict[str, Any]:
    admin: QueueAdmin = request.app.state.admin
    health = admin.get_system_health()
    return {
        "schedules": list_schedules(admin.config),
        "paused": admin.paused(),
        "limits": admin.get_limits(),
        "health": health,
        "upcoming": list_scheduled(admin.config, limit=UPCOMING),
        "upcoming_limit": UPCOMING,
        "priorities": PRIORITIES,
    }


async def _page(request: Request) -> Response:
    context = await run_in_threadpool(_context, request)
    return render(request, "schedules.html", title="Schedules and limits", **context)


async def _tier_action(request: Request) -> Response:
    """Pause or resume one tier of one queue."""
    state = request.app.state
    checked = await action_form(request)
    if isinstance(checked, Response):
        return checked
    fields, _ = checked
    action = fields.get("action", "")
    if action not in TIER_ACTIONS:
        return PlainTextResponse("unknown action", status_code=404)
    try:
        queue = validate_queue_name(fields.get("queue", ""))
        priority = validate_priority(fields.get("priority", ""))
    except ValueError as exc:
        return PlainTextResponse(f"bad request: {exc}", status_code=400)
    admin: QueueAdmin = state.admin
    method = admin.pause if action == "pause" else admin.resume
    await run_in_threadpool(method, queue, priority)
    return RedirectResponse(path_for(request, "schedules"), status_code=303)
