"""What every part of ``WorkerBroker`` shares: its state, call ids and the KEYS of a held lease.

Also the shapes its calls take and give: ``ClaimedItem`` (a leased item) and ``Completion``
(a successful run waiting to be acked).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from queue_system.config import QueueConfig
from queue_system.core.clock import to_ms
from queue_system.core.hooks import JobInfo
from queue_system.engine.keys import KeySpace
from queue_system.engine.scripts import Scripts
from queue_system.worker.start_marks import StartMarks


@dataclass(frozen=True, kw_only=True)
class ClaimedItem:
    """An item leased to this worker: its token, the list it came from, and its raw bytes.

    ``started`` is True when the claim already marked it started (see ``mark_started``).
    """

    token: str
    list_key: str
    raw: bytes
    started: bool = False


@dataclass(frozen=True, kw_only=True)
class Completion:
    """A successful run waiting to be acked in the next batch."""

    item: ClaimedItem
    operation_id: str
    dedup_key: str | None
    run_ms: int
    queue_priority: str
    wait_ms: int
    result_json: str
    result_ttl: int
    processor: str = ""
    job: JobInfo | None = None  # what hooks are told (None: built from the fields above)
    #: ``on_failure`` and its data, fired instead when the ack finds a cancel request.
    on_cancelled: tuple[Callable[..., Any], dict[str, Any]] | None = None


class BrokerBase:
    """The state of one worker's script calls; bind it to one event loop."""

    def __init__(self, config: QueueConfig, client: redis.asyncio.Redis, worker_id: str) -> None:
        self.config = config
        self.keys: KeySpace = config.keys
        self.client = client
        self.worker_id = worker_id
        self.scripts = config.durable(Scripts.register(client))
        self._lease_ms = to_ms(config.lease_timeout)
        # Call ids must never repeat, even for two brokers that share a worker id.
        self._call_prefix = f"{worker_id}:{uuid.uuid4().hex[:12]}"
        self._call_numbers = itertools.count(1)
        self._unanswered: dict[str, str] = {}  # kind -> id of a call that raised
        self._list_limit_keys: dict[str, tuple[str, str, str, str]] = {}
        #: Set when a finishing script pushed an operation onto the deps outbox.
        self.dependents_waiting = False
        #: What the last claim said about limits: None when no list was held back by one, else
        #: seconds until a rate window frees room (0.0: a concurrency cap is full).
        self.held_back_s: float | None = None
        self._starts = StartMarks(
            lambda tokens: self.scripts.start(
                keys=[self.keys.inflight, self.keys.started], args=tokens
            )
        )

    @asynccontextmanager
    async def _call_id(self, kind: str) -> AsyncIterator[str]:
        """A call id for one ``kind`` of call; kept for the next call if this one raises
        (it may have run), so that the retry is recognised as a re-send."""
        call_id = self._unanswered.pop(kind, None) or (
            f"{self._call_prefix}:{kind}:{next(self._call_numbers)}"
        )
        try:
            yield call_id
        except BaseException:
            self._unanswered[kind] = call_id
            raise

    def _held(self, *keys: str, dedup_key: str | None = None) -> list[str]:
        """KEYS of a script that acts on a held lease: ``inflight``, ``leases``, then ``keys``,
        then ``dedup_key`` when it is a dedup key of this namespace (the script frees it; one
        read from untrusted bytes names no other key)."""
        found = [self.keys.inflight, self.keys.leases, *keys]
        if dedup_key is not None and dedup_key.startswith(self.keys.dedup_prefix):
            found.append(dedup_key)
        return found

    def _ended(self, answer: Any) -> bool:
        """A finishing script's answer: 1 = done, 2 = done and its dependents await
        resolution (it went onto the deps outbox), 0 = the lease was lost."""
        if int(answer) == 2:
            self.dependents_waiting = True
        return bool(int(answer))
