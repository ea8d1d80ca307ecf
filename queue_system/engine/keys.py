"""KeySpace: builds every Redis key name queue_system uses. Pure; no I/O.

Layout under a prefix (default ``queue:``)::

    queue:{priority}:{queue_name}   LIST  waiting items (JSON envelopes); LPUSH in, RPOP out
    queue:registry                  SET   queue names enqueued to (until forgotten or idle)
    queue:ready                     SET   waiting-list keys that may hold items: every script
                                          that pushes onto a waiting list adds it; a claim
                                          that finds it empty (or a purge that empties it)
                                          removes it. A stale member is harmless, a missing
                                          one is repaired by the worker's index sweep
    queue:queue_activity            HASH  queue name -> "<last seen in use (s)> <processed>"
    queue:failures                  LIST  dead letters: retries exhausted (capped)
    queue:system_errors             LIST  dead letters: items that cannot be run (capped)
    queue:inflight                  HASH  lease token -> "<list key>\\n<raw item>"
    queue:leases                    ZSET  lease token -> lease deadline (ms, Redis TIME)
    queue:started_leases            SET   lease tokens whose item has started running
    queue:lease_seq                 STRING last lease number handed out (INCRBY; no TTL)
    queue:receipt:claim:{call_id}   STRING what one claim/recover call leased (TTL: one lease)
    queue:receipt:finish:{token}    STRING a dead letter of an item without a status record
                                          was written (TTL: backup_ttl)
    queue:delayed                   ZSET  "<list key>\\n<raw item>" -> due time (ms): retries and
                                          deploy-skew waits (the worker's clock)
    queue:scheduled                 ZSET  "<list key>\\n<raw item>" -> due time (ms, Redis TIME):
                                          items enqueued with delay= or run_at=
    queue:scheduled_counts          HASH  queue name -> items of that queue in ``scheduled``
                                          (kept by the scripts that add or remove members, so
                                          status and health read counts without a scan)
    queue:redeliveries              HASH  operation id (sha1 of the item without one) -> times
                                          the lease of a started run expired (TTL from its
                                          first count; a field ends with its item)
    queue:notify                    LIST  wake-up tokens for idle workers (capped)
    queue:metrics                   HASH  shared counters: globals, <counter>:<queue>:<priority>
                                          per tier, and dead letters per queue
                                          ("dead:<failed|system_errors>:<queue>", kept by
                                          the scripts that write, trim or remove them)
    queue:metrics_history           LIST  samples of the shared counters for the dashboard's
                                          chart, newest first (capped: one hour of samples)
    queue:dedup:{sha256(key)}       STRING operation id holding a deduplication key
    queue:op:{operation_id}         HASH  status record of one operation (no TTL while its
                                          item lives; a TTL once it is finished)
    queue:workers                   ZSET  worker id -> last heartbeat (ms); stale ones pruned
    queue:paused                    SET   waiting-list keys no claim takes from (paused tiers)
    queue:limits                    HASH  queue name -> "<max concurrency> <rate count>
                                          <rate window ms> <config|runtime>" (core/limits.py)
    queue:limit:running:{name}      SET   lease tokens of a capped queue's claims; a token
                                          whose lease is gone or past its deadline is pruned
                                          when the cap is reached (at most cap + one claim)
    queue:limit:starts:{name}       ZSET  lease token -> claim time (ms, Redis TIME) of a
                                          rate-limited queue's claims in the last window (TTL:
                                          one window)
    queue:done:{operation_id}       LIST  wake-up tokens for ``wait_for`` callers, written by the
                                          scripts that end an operation only while its record
                                          counts waiters (TTL: the record's)
    queue:cancels                   pub/sub channel: operation ids whose cancel was requested
                                          while they ran (workers stop them; the durable mark
                                          is the record's ``cancel_requested`` field)
    queue:dependents:{operation_id} SET   operation ids waiting for this live operation to end
                                          (depends_on; deleted once they are resolved)
    queue:waits_on:{operation_id}   SET   the dependencies a waiting_for_dependencies item still
                                          waits for (no TTL while it waits; deleted when it ends)
    queue:deps_outbox               LIST  "<operation id> <status>" of ended operations whose
                                          record had ``has_dependents``: pushed by the scripts
                                          that end an operation, removed once its dependents
                                          are released or failed (resolve_dependents.lua)
    queue:worker:{worker_id}        HASH  one live worker's record (TTL, refreshed by heartbeat)
    queue:cron_last                 HASH  schedule name -> newest tick fired or skipped (ms)
    queue:cron_claims               HASH  schedule name -> JSON of ticks claimed and not yet
                                          known enqueued (a worker that dies between claim
                                          and enqueue leaves one; another one finishes it)
    queue:cron_schedules            HASH  schedule name -> JSON spec + publishing worker, when
                                          published (ms), next and last tick (ms)

Lease tokens are ``<worker id>:<n>``, ``n`` from ``lease_seq``: unique for ever, and ordered
as the items were claimed. Keys without a TTL or size cap: the waiting lists, the status
records (and dedup keys) of live items, the one ``lease_seq`` counter, and the ``ready`` index
(at most one member per waiting list). Because every name is built here, a Redis Cluster
layout (one hash tag per prefix) needs no change at call sites.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from queue_system.core.checks import QUEUE_NAME_PATTERN, validate_priority, validate_queue_name
from queue_system.core.types import PRIORITIES, Priority

PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.\-{}]+:")


@dataclass(frozen=True)
class KeySpace:
    """Every key name for one namespace (``prefix``)."""

    prefix: str = "queue:"

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError(
                f"queue_prefix {self.prefix!r} is invalid: "
                "letters, digits, '_.-{}', ending in ':'"
            )

    def queue(self, queue_name: str, priority: str = "normal") -> str:
        """The waiting list of ``queue_name`` at ``priority``: ``queue:high:process_data``."""
        return f"{self.prefix}{validate_priority(priority)}:{validate_queue_name(queue_name)}"

    def parse_queue(self, key: str) -> tuple[str, Priority] | None:
        """(queue_name, priority) of a waiting-list key, or None if it is not one."""
        if not key.startswith(self.prefix):
            return None
        priority, _, name = key[len(self.prefix) :].partition(":")
        if priority in PRIORITIES and QUEUE_NAME_PATTERN.fullmatch(name):
            return name, priority  # type: ignore[return-value,unused-ignore]
        return None

    def claim_order(self, queue_names: list[str]) -> list[str]:
        """Waiting-list keys in strict priority order: all high lists, then normal, then low."""
        return [self.queue(name, p) for p in PRIORITIES for name in queue_names]

    def dedup(self, deduplication_key: str) -> str:
        digest = hashlib.sha256(deduplication_key.encode()).hexdigest()[:40]
        return f"{self.dedup_prefix}{digest}"

    @property
    def dedup_prefix(self) -> str:
        return f"{self.prefix}dedup:"

    def operation(self, operation_id: str) -> str:
        """The status record of one operation."""
        return f"{self.operation_prefix}{operation_id}"

    @property
    def operation_prefix(self) -> str:
        return f"{self.prefix}op:"

    def done(self, operation_id: str) -> str:
        """The LIST that wakes ``wait_for`` callers when ``operation_id`` ends."""
        return f"{self.prefix}done:{operation_id}"

    def dependents(self, operation_id: str) -> str:
        """The operations waiting for ``operation_id`` to end (``depends_on``)."""
        return f"{self.prefix}dependents:{operation_id}"

    def waits_on(self, operation_id: str) -> str:
        """The dependencies a ``waiting_for_dependencies`` operation still waits for."""
        return f"{self.prefix}waits_on:{operation_id}"

    @property
    def deps_outbox(self) -> str:
        """Ended operations whose dependents are not resolved yet."""
        return f"{self.prefix}deps_outbox"

    @property
    def cancels(self) -> str:
        """The pub/sub channel on which workers hear of cancel requests for running items."""
        return f"{self.prefix}cancels"

    def worker(self, worker_id: str) -> str:
        """The record of one live worker."""
        return f"{self.prefix}worker:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def registry(self) -> str:
        return f"{self.prefix}registry"

    @property
    def ready(self) -> str:
        """The index of waiting lists that may hold items (so a claim skips idle queues)."""
        return f"{self.prefix}ready"

    @property
    def queue_activity(self) -> str:
        """When each registered queue was last seen in use (idle names retire)."""
        return f"{self.prefix}queue_activity"

    @property
    def failures(self) -> str:
        return f"{self.prefix}failures"

    @property
    def system_errors(self) -> str:
        return f"{self.prefix}system_errors"

    @property
    def inflight(self) -> str:
        return f"{self.prefix}inflight"

    @property
    def leases(self) -> str:
        return f"{self.prefix}leases"

    @property
    def started(self) -> str:
        return f"{self.prefix}started_leases"

    @property
    def lease_sequence(self) -> str:
        return f"{self.prefix}lease_seq"

    def claim_receipt(self, call_id: str) -> str:
        """What one claim (or recover) call leased, so that a re-sent call answers the same."""
        return f"{self.prefix}receipt:claim:{call_id}"

    def finish_receipt(self, token: str) -> str:
        """Proof that the lease ``token`` was dead-lettered (items without a status record)."""
        return f"{self.prefix}receipt:finish:{token}"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}delayed"

    @property
    def scheduled(self) -> str:
        """Items enqueued with ``delay``/``run_at``, scored by their due time (server clock)."""
        return f"{self.prefix}scheduled"

    @property
    def scheduled_counts(self) -> str:
        """Queue name -> how many of its items wait in :attr:`scheduled`."""
        return f"{self.prefix}scheduled_counts"

    @property
    def redeliveries(self) -> str:
        return f"{self.prefix}redeliveries"

    @property
    def notify(self) -> str:
        return f"{self.prefix}notify"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}metrics"

    @property
    def paused(self) -> str:
        """The waiting lists (tiers) that workers do not claim from."""
        return f"{self.prefix}paused"

    @property
    def limits(self) -> str:
        """Each limited queue's live limits (``core.limits.encode_limits``)."""
        return f"{self.prefix}limits"

    def limit_running(self, queue_name: str) -> str:
        """Lease tokens counted against ``queue_name``'s ``max_concurrency``."""
        return f"{self.prefix}limit:running:{validate_queue_name(queue_name)}"

    def limit_starts(self, queue_name: str) -> str:
        """Claim times counted against ``queue_name``'s ``rate_limit``."""
        return f"{self.prefix}limit:starts:{validate_queue_name(queue_name)}"

    @property
    def cron_last(self) -> str:
        """Per schedule: the newest tick fired or skipped (never fired again)."""
        return f"{self.prefix}cron_last"

    @property
    def cron_claims(self) -> str:
        """Per schedule: ticks claimed by a worker and not yet known enqueued."""
        return f"{self.prefix}cron_claims"

    @property
    def cron_schedules(self) -> str:
        """Per schedule: its spec as the workers that run it published it."""
        return f"{self.prefix}cron_schedules"

    @property
    def metrics_history(self) -> str:
        """Samples of the shared counters over time (the dashboard's chart), newest first."""
        return f"{self.prefix}metrics_history"
