"""The audit log of operators' changes (``queue_system.admin``): who, from where, what."""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import asdict

from queue_system.core.types import DeadLetterReport
from queue_system.ops.dead_letter_scan import Outcome
from queue_system.ops.dead_letters import DeadLetterFilter

logger = logging.getLogger("queue_system.admin")  # the audit log's name
LOGGED_IDS_MAX = 100  # operation ids written in one requeue/purge log record


def report(
    action: str,
    system_errors: bool,
    outcome: Outcome,
    ids: frozenset[str] | None,
    dry_run: bool,
    flt: DeadLetterFilter,
) -> DeadLetterReport:
    list_name = "system_errors" if system_errors else "failures"
    handled = set(outcome.operation_ids) | {s["operation_id"] for s in outcome.skipped}
    result: DeadLetterReport = {
        "count": len(outcome.operation_ids),
        "operation_ids": outcome.operation_ids,
        "skipped": outcome.skipped,
        "not_found": sorted(ids - handled) if ids is not None else [],
        "dry_run": dry_run,
        "list": list_name,
    }
    dry = " (dry run, nothing written)" if dry_run else ""
    logger.info(
        "%s: %d %s record(s)%s",
        action,
        result["count"],
        list_name,
        dry,
        extra={
            "action": action,
            "count": result["count"],
            **operator_identity(),
            "list": list_name,
            "dry_run": dry_run,
            "skipped": len(outcome.skipped),
            "operation_ids": outcome.operation_ids[:LOGGED_IDS_MAX],
            "filters": {
                k: v for k, v in asdict(flt).items() if v is not None and k != "operation_ids"
            },
        },
    )
    return result


def operator_identity() -> dict[str, str]:
    """Who runs this process: ``{"user", "host"}`` for audit log records."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        user = "unknown"
    return {"user": user, "host": socket.gethostname()}


def audit(action: str, **fields: str) -> None:
    """One audit log record of an operator's change (who, from where, what)."""
    audit = {"action": action, **fields, **operator_identity()}
    logger.info("%s: %s", action, fields, extra=audit)
