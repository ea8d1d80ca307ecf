"""The failures and system-errors pages: filtered lists, and requeue / purge with confirmation.

An action is two POSTs: the first (``confirm`` absent) runs the admin call as a dry run and
shows what it would do; the second (``confirm=1``) does it and redirects back to the list. Both
need the session's CSRF token; read-only dashboards refuse both. The admin call writes the
audit record (``queue_system.admin`` logger), the same one as ``queue-system failures``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from queue_system.core.types import DeadLetterReport
from queue_system.ops.admin import QueueAdmin
from queue_system.web.auth import action_form
from queue_system.web.render import path_for, render

LIST_LIMIT = 200  # records shown per list page (the admin scan stops there)
KINDS = {"failures": False, "system-errors": True}  # URL part -> system_errors flag
ACTIONS = ("requeue", "purge")
FILTER_FIELDS = ("queue", "processor", "error_type", "since_h")


def dead_letter_routes() -> list[Route]:
    """The routes of the failures and system-errors pages."""
    return [
        Route("/dead-letters/{kind}", _list, name="dead_letters"),
        Route("/dead-letters/{kind}/actions", _act, methods=["POST"], name="dead_letter_action"),
    ]


def _filters(values: Any, now: float) -> dict[str, Any]:
    """Admin filter kwargs from query or form fields (empty ones ignored)."""
    found: dict[str, Any] = {}
    for name in ("queue", "processor", "error_type"):
        value = (values.get(name) or "").strip()
        if value:
            found[name] = value
    hours = (values.get("since_h") or "").strip()
    if hours:
        found["since"] = now - float(hours) * 3600
    return found


def _list(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind not in KINDS:
        return PlainTextResponse("unknown list", status_code=404)
    admin: QueueAdmin = request.app.state.admin
    try:
        filters = _filters(request.query_params, admin.config.clock.time())
    except ValueError:
        return PlainTextResponse("bad request: since_h must be a number", status_code=400)
    records = admin.list_dead_letters(system_errors=KINDS[kind], limit=LIST_LIMIT, **filters)
    return render(
        request,
        "dead_letters.html",
        title="System errors" if KINDS[kind] else "Failures",
        kind=kind,
        records=records,
        limit=LIST_LIMIT,
        values={f: request.query_params.get(f, "") for f in FILTER_FIELDS},
        done=request.query_params.get("done"),
        count=request.query_params.get("count"),
    )


async def _act(request: Request) -> Response:
    kind = request.path_params["kind"]
    state = request.app.state
    checked = await action_form(request)
    if isinstance(checked, Response):
        return checked
    fields, form = checked
    action = fields.get("action", "")
    if kind not in KINDS or action not in ACTIONS:
        return PlainTextResponse("unknown list or action", status_code=404)
    ids = [v for k, v in form.multi_items() if k == "operation_id" and isinstance(v, str) and v]
    every = fields.get("all") == "1"
    if not ids and not every:
        return PlainTextResponse("select at least one record, or all", status_code=400)
    admin: QueueAdmin = state.admin
    try:
        filters = _filters(fields, admin.config.clock.time())
    except ValueError:
        return PlainTextResponse("bad request: since_h must be a number", status_code=400)
    confirmed = fields.get("confirm") == "1"
    method = admin.requeue if action == "requeue" else admin.purge

    def call() -> DeadLetterReport:
        return method(
            system_errors=KINDS[kind],
            operation_ids=ids or None,
            all=every and not ids,
            dry_run=not confirmed,
            **filters,
        )

    report = await run_in_threadpool(call)
    if not confirmed:
        return render(
            request,
            "confirm.html",
            title=f"Confirm {action}",
            kind=kind,
            action=action,
            report=report,
            ids=ids,
            every=every and not ids,
            values={f: fields.get(f, "") for f in FILTER_FIELDS},
        )
    query = urlencode({"done": action, "count": report["count"]})
    return RedirectResponse(f"{path_for(request, 'dead_letters', kind=kind)}?{query}", 303)
