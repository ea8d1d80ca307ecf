"""``before_enqueue`` middleware over envelopes, for every path that enqueues: the sync and
async managers and the worker's cron runner. Pure: the hooks are the only calls out.

Each hook gets a copy of one item's envelope with an empty ``meta`` dict; what the hooks put in
``envelope["meta"]`` is stored with the item (a worker's hooks read it as ``job.meta``, e.g. a
trace context). Everything else in the copy is read-only: changes to it are not stored. A hook
that raises, or ``meta`` that is not a JSON object, is reported (logged, ``hook_errors``) and
the item is enqueued without that hook's metadata: a hook never fails an enqueue.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from queue_system.core.envelope import dumps
from queue_system.core.hooks import HookChain
from queue_system.core.types import Envelope


def before_enqueue_sync(hooks: HookChain, envelopes: Iterable[Envelope]) -> None:
    """Run the sync ``before_enqueue`` hooks on each envelope, storing the ``meta`` they set."""
    for envelope in envelopes if hooks.before_enqueue else ():
        view = _view(envelope)
        for hook in hooks.before_enqueue:
            kept = dict(view["meta"])
            hooks.run_sync("before_enqueue", (hook,), view, op=envelope["id"])
            _check_meta(hooks, envelope, view, kept)
        _store_meta(envelope, view)


async def before_enqueue(hooks: HookChain, envelopes: Iterable[Envelope]) -> None:
    """Run the ``before_enqueue`` hooks (sync or async) on each envelope, storing their ``meta``."""
    for envelope in envelopes if hooks.before_enqueue else ():
        view = _view(envelope)
        for hook in hooks.before_enqueue:
            kept = dict(view["meta"])
            await hooks.run("before_enqueue", (hook,), view, op=envelope["id"])
            _check_meta(hooks, envelope, view, kept)
        _store_meta(envelope, view)


def _view(envelope: Envelope) -> dict[str, Any]:
    return {**envelope, "meta": {}}


def _check_meta(
    hooks: HookChain, envelope: Envelope, view: dict[str, Any], kept: dict[str, Any]
) -> None:
    """Undo one hook's ``meta`` when it is not a JSON object (reported as its error)."""
    meta = view.get("meta")
    try:
        if not isinstance(meta, dict):
            raise TypeError(f"envelope['meta'] must be a dict, got {type(meta).__name__}")
        dumps(meta, what="envelope['meta']")
    except Exception as exc:  # TypeError, SerializationError: dropped, never a failed enqueue
        hooks.on_error("before_enqueue", exc, envelope["id"])
        view["meta"] = kept


def _store_meta(envelope: Envelope, view: dict[str, Any]) -> None:
    if view["meta"]:
        envelope["meta"] = view["meta"]
