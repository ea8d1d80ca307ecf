"""WorkerBroker: the worker's Redis operations, each exactly one script call (asyncio).

Claim, start (batched in ``start_marks.py``), ack, retry, dead-letter, renew, release, promote
and recover, in three parts by role: ``claims`` (lease items), ``finishing`` (end a held
lease) and ``upkeep`` (renew, release, recover, dependents, heartbeats); ``base`` holds their
shared state and the shapes they take (``ClaimedItem``, ``Completion``). Tokens name leases:
``<worker id>:<n>``, ``n`` handed out by the server (never reused). Every operation that
finishes an item checks that the caller still holds its lease (fencing) and reports when it
does not.

Every script is safe to re-send: a reply can be lost after the server ran the call, and
redis-py's ``Retry`` (one reconnect) or the worker's own retry sends it again. A claim or
recover carries a call id, and its re-run answers what the first run leased; a call that
raised keeps its id for the next call of its kind, so the worker's retry re-sends it too. A
re-run of ack / schedule_retry / dead_letter recognises its own token in the item's status
record and answers "done".
"""

from __future__ import annotations

from queue_system.worker.store.base import ClaimedItem, Completion
from queue_system.worker.store.claims import MAX_CLAIM_ITEMS, ClaimCalls
from queue_system.worker.store.finishing import ACKED, CANCELLED, LOST, FinishCalls
from queue_system.worker.store.upkeep import CLAIM_LIMIT, Maintenance, UpkeepCalls

# The package's face: what the rest of the worker imports from ``queue_system.worker.store``.
__all__ = [
    "ACKED",
    "CANCELLED",
    "CLAIM_LIMIT",
    "LOST",
    "MAX_CLAIM_ITEMS",
    "ClaimedItem",
    "Completion",
    "Maintenance",
    "WorkerBroker",
]


class WorkerBroker(ClaimCalls, FinishCalls, UpkeepCalls):
    """Script calls for one worker; bind it to one event loop (create inside ``start``)."""
