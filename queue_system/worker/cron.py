"""The cron loop: every worker fires the config's periodic jobs, each tick exactly once.

Each pass (about once a second), for each schedule declared with ``QueueConfig.cron``:

1. read the schedule's last tick from Redis and decide what to fire (``core.schedule``);
2. claim it (``cron_claim.lua``): a compare-and-set of the last tick that also stores the
   claimed ticks; of any number of workers that read the same last tick, one wins;
3. enqueue one item per claimed tick, with the operation id ``cron:<name>:<tick ms>``
   (``enqueue.lua`` stores nothing for an id whose status record exists);
4. end the claim (``cron_done.lua``).

A worker that dies between 2 and 4 leaves its claim open: CLAIM_TIMEOUT_S later any worker
that runs the schedule enqueues the claimed ticks again (the ones already stored are
duplicates by their operation id) and ends the claim. A tick is never claimed twice, since
the last tick only moves forward, so an old tick cannot fire again after its status record
has expired.

Workers also publish the schedules they run (``cron_schedules``) at start and every
PUBLISH_INTERVAL_S; ``queue-system cron`` lists them and marks the ones no live worker
refreshes as stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import redis
import redis.asyncio
from redis.commands.core import AsyncScript
from redis.typing import EncodableT

from queue_system.config import NOTIFY_CAP, QueueConfig
from queue_system.core.clock import iso_utc, to_ms
from queue_system.core.enqueue_hooks import before_enqueue
from queue_system.core.envelope import SCHEMA_VERSION, as_text, encode_envelope
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.core.schedule import (
    PUBLISH_INTERVAL_S,
    CronSpec,
    FireDecision,
    operation_id_for,
    ticks_to_fire,
)
from queue_system.core.types import Envelope
from queue_system.engine.outage import RedisOutage
from queue_system.engine.scripts import Scripts
from queue_system.errors import QueueSystemError

logger = logging.getLogger("queue_system.worker.cron")

CRON_POLL_S = 1.0  # longest pause between two passes (shorter when a tick is nearer)
CLAIM_TIMEOUT_S = 10.0  # an open claim this old is finished by another worker


class CronRunner:
    """Fires the periodic jobs of one worker's config (see the module doc)."""

    def __init__(
        self,
        *,
        config: QueueConfig,
        client: redis.asyncio.Redis,
        worker_id: str,
        scripts: Scripts[AsyncScript] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.worker_id = worker_id
        self.scripts = scripts or Scripts.register(client)
        self._publish_at = 0.0

    @property
    def schedules(self) -> dict[str, CronSpec]:
        return self.config.schedules

    async def loop(self, outage: RedisOutage, closing: asyncio.Event) -> None:
        """Run passes until ``closing`` is set; Redis errors back off as the other loops do."""
        while not closing.is_set():
            try:
                await self.run_once()
            except redis.RedisError as exc:
                await outage.wait(exc, "cron", until=closing)
                continue
            outage.recovered("cron")
            await outage.sleep(self.pause(), until=closing)

    def pause(self) -> float:
        """Seconds until the next pass: CRON_POLL_S, or less when a tick is due sooner."""
        now_ms = to_ms(self.config.clock.time())
        pause = CRON_POLL_S
        for spec in self.schedules.values():
            tick = spec.next_tick(now_ms)
            if tick is not None:
                pause = min(pause, (tick - now_ms) / 1000)
        return max(pause, 0.01)

    async def run_once(self) -> list[str]:
        """One pass over every schedule; the operation ids enqueued (or found enqueued)."""
        if not self.schedules:
            return []
        now_s = self.config.clock.time()
        if now_s >= self._publish_at:
            await self.publish(now_s)
        keys = self.config.keys
        last_ticks = await self.client.hgetall(keys.cron_last)
        claims = await self.client.hgetall(keys.cron_claims)
        last_by_name = {as_text(k): as_text(v) for k, v in last_ticks.items()}
        claim_by_name = {as_text(k): as_text(v) for k, v in claims.items()}
        fired: list[str] = []
        now_ms = to_ms(now_s)
        for name, spec in self.schedules.items():
            try:
                open_claim = claim_by_name.get(name)
                if open_claim is not None:
                    fired += await self._finish_abandoned(spec, open_claim, now_ms)
                    continue
                fired += await self._fire_due(spec, last_by_name.get(name), now_ms)
            except (redis.ResponseError, QueueSystemError) as exc:
                # e.g. max_queues reached: the claim stays open and is retried later.
                logger.error("cron %s: could not fire: %s", name, exc)
        return fired

    async def _fire_due(self, spec: CronSpec, last: str | None, now_ms: int) -> list[str]:
        last_ms = int(last) if last else None
        decision = ticks_to_fire(spec, last_ms=last_ms, now_ms=now_ms)
        if decision.last is None or decision.last == last_ms:
            return []
        claim = (
            json.dumps(
                {"ticks": decision.fire, "at": now_ms, "by": self.worker_id, "n": _nonce()},
                separators=(",", ":"),
            )
            if decision.fire
            else ""
        )
        won = await self.scripts.cron_claim(
            keys=[self.config.keys.cron_last, self.config.keys.cron_claims],
            args=[spec.name, last or "", decision.last, claim],
        )
        if int(won) != 1:
            return []  # another worker claimed these ticks (or an open claim blocks them)
        _log_dropped(spec, decision)
        if not claim:
            return []
        return await self._enqueue_and_close(spec, claim)

    async def _finish_abandoned(self, spec: CronSpec, claim: str, now_ms: int) -> list[str]:
        """Enqueue the ticks of a claim left open: this worker's own, or another worker's
        that has not ended it within CLAIM_TIMEOUT_S."""
        try:
            parsed = json.loads(claim)
            claimed_at, claimed_by = int(parsed["at"]), str(parsed["by"])
        except (ValueError, KeyError, TypeError):
            claimed_at, claimed_by = 0, ""  # unreadable: finish it now
        # This worker's own claim (its enqueue failed, e.g. Redis was down): finish it now.
        if claimed_by != self.worker_id and now_ms - claimed_at < CLAIM_TIMEOUT_S * 1000:
            return []  # its worker is probably still enqueueing it
        logger.warning("cron %s: finishing a claim left open: %s", spec.name, claim)
        return await self._enqueue_and_close(spec, claim)

    async def _enqueue_and_close(self, spec: CronSpec, claim: str) -> list[str]:
        try:
            ticks = [int(t) for t in json.loads(claim)["ticks"]]
        except (ValueError, KeyError, TypeError):
            ticks = []
        ids = await self.enqueue(spec, ticks) if ticks else []
        await self.scripts.cron_done(keys=[self.config.keys.cron_claims], args=[spec.name, claim])
        return ids

    async def enqueue(self, spec: CronSpec, ticks: list[int]) -> list[str]:
        """Enqueue one item per tick in one ``enqueue.lua`` call (the producer's arguments);
        a tick already enqueued (same operation id) is a duplicate and writes nothing."""
        config = self.config
        now = config.clock.time()
        queue_key = config.keys.queue(spec.queue_name, spec.priority)
        ids = [operation_id_for(spec.name, tick) for tick in ticks]
        keys = [
            config.keys.registry,
            config.keys.notify,
            config.keys.metrics,
            queue_key,
            config.keys.ready,
            *(config.keys.operation(op_id) for op_id in ids),
        ]
        args: list[Any] = [
            spec.queue_name,
            config.max_queues,
            NOTIFY_CAP,
            config.backup_ttl,
            len(ids),
            spec.priority,
            spec.processor,
            now,
            _nonce(),
        ]
        retry = QueueRetryConfig().to_dict()
        envelopes: list[Envelope] = []
        for op_id in ids:
            envelope: Envelope = {
                "v": SCHEMA_VERSION,
                "id": op_id,
                "queue": spec.queue_name,
                "priority": spec.priority,  # type: ignore[typeddict-item]
                "processor": spec.processor,
                "entity": spec.entity,
                "retry": retry,
                "on_success": None,
                "on_failure": None,
                "timeout": None,
                "dedup": None,
                "attempts": 0,
                "first_at": now,
                "enqueued_at": now,
                "history": [],
            }
            envelopes.append(envelope)
        # The same middleware as a manager's enqueue (e.g. a trace context in meta).
        await before_enqueue(config.hooks(), envelopes)
        for envelope in envelopes:
            encoded = encode_envelope(envelope, None, config.max_payload_bytes)
            args.extend((envelope["id"], encoded, "0"))
        answer = await self.scripts.enqueue(keys=keys, args=args)
        stored = [op_id for i, op_id in enumerate(ids) if not answer[2 * i]]
        for op_id, tick in zip(ids, ticks, strict=True):
            if op_id in stored:
                logger.info(
                    "cron %s: enqueued the %s tick as %s",
                    spec.name,
                    iso_utc(tick / 1000),
                    op_id,
                    extra={"operation_id": op_id},
                )
        return ids

    async def publish(self, now_s: float) -> None:
        """Publish this worker's schedules (spec, worker, time) for ``queue-system cron``."""
        self._publish_at = now_s + PUBLISH_INTERVAL_S
        entries: dict[EncodableT, EncodableT] = {
            name: json.dumps(
                {
                    **json.loads(spec.to_json()),
                    "worker": self.worker_id,
                    "published_at": to_ms(now_s),
                },
                sort_keys=True,
            )
            for name, spec in self.schedules.items()
        }
        await self.client.hset(self.config.keys.cron_schedules, mapping=entries)


def _log_dropped(spec: CronSpec, decision: FireDecision) -> None:
    if not decision.dropped:
        return
    logger.warning(
        "cron %s: %s%d missed ticks not fired (catch_up=%r), the oldest at %s",
        spec.name,
        "at least " if decision.dropped_more else "",
        decision.dropped,
        spec.catch_up,
        iso_utc((decision.dropped_from or 0) / 1000),
    )


def _nonce() -> str:
    return uuid.uuid4().hex[:16]
