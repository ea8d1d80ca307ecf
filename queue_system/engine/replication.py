"""Durable writes: a script call that returns only once replicas have its write (``WAIT``).

Redis replicates asynchronously: a write a master acknowledged can vanish if the master dies
before a replica has it and a replica is promoted. ``WAIT numreplicas timeout`` blocks the
connection that wrote until that many replicas acknowledged every write it made, so it must
run on the *same* connection as the script: here both go in one pipeline (one round trip).

A pipeline re-sent after a dropped connection re-runs the script, which is safe for every
queue_system script (see each file's header), then waits again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.cluster
from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT

from queue_system.engine.scripts import Scripts

#: The start of WAIT's error on a replica: a master demoted while our write was in flight.
DEMOTED = "WAIT cannot be used with replica instances"

#: Called with how many replicas acknowledged when fewer than required did; may raise.
OnShort = Callable[[int], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Replication:
    """``min_replicas`` to wait for, for at most ``timeout_s``; ``on_short[name]`` decides
    what a script called ``name`` does when fewer acknowledged in time."""

    min_replicas: int
    timeout_s: float
    on_short: dict[str, OnShort]

    @property
    def timeout_ms(self) -> int:
        return max(1, round(self.timeout_s * 1000))


def replicated(scripts: Scripts[Any], replication: Replication | None) -> Scripts[Any]:
    """``scripts`` with each script named in ``replication.on_short`` made durable; the same
    object when ``replication`` is None (no cost when the option is off)."""
    if replication is None or replication.min_replicas == 0:
        return scripts
    changes: dict[str, Script | AsyncScript] = {}
    for name, on_short in replication.on_short.items():
        script = getattr(scripts, name)
        if isinstance(script, AsyncScript):
            changes[name] = AsyncReplicatedScript(script, replication, on_short)
        else:
            changes[name] = ReplicatedScript(script, replication, on_short)
    return dataclasses.replace(scripts, **changes)


class ReplicatedScript(Script):
    """A sync :class:`Script` whose call also waits for the replicas (see the module doc)."""

    def __init__(self, script: Script, replication: Replication, on_short: OnShort) -> None:
        super().__init__(script.registered_client, script.script)
        self._replication = replication
        self._on_short = on_short

    def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: redis.Redis | redis.cluster.RedisCluster | None = None,
    ) -> Any:
        target = client if client is not None else self.registered_client
        assert isinstance(target, redis.Redis)  # queue_system never registers on a cluster
        keys, args = list(keys or []), list(args or [])
        answer, acked = self._send(target, keys, args)
        if isinstance(answer, NoScriptError):  # first use on this server (or after a flush)
            target.script_load(self.script)
            answer, acked = self._send(target, keys, args)
        return _settle(answer, acked, self._replication.min_replicas, self._on_short)

    def _send(self, client: redis.Redis, keys: list[Any], args: list[Any]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(self.sha, len(keys), *keys, *args)
        pipe.wait(self._replication.min_replicas, self._replication.timeout_ms)
        return pipe.execute(raise_on_error=False)


class AsyncReplicatedScript(AsyncScript):
    """The asyncio twin of :class:`ReplicatedScript`."""

    def __init__(self, script: AsyncScript, replication: Replication, on_short: OnShort) -> None:
        super().__init__(script.registered_client, script.script)
        self._replication = replication
        self._on_short = on_short

    async def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster | None = None,
    ) -> Any:
        target = client if client is not None else self.registered_client
        assert isinstance(target, redis.asyncio.Redis)  # never registered on a cluster
        keys, args = list(keys or []), list(args or [])
        answer, acked = await self._send(target, keys, args)
        if isinstance(answer, NoScriptError):
            await target.script_load(self.script)
            answer, acked = await self._send(target, keys, args)
        return _settle(answer, acked, self._replication.min_replicas, self._on_short)

    async def _send(
        self, client: redis.asyncio.Redis, keys: list[Any], args: list[Any]
    ) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(self.sha, len(keys), *keys, *args)
        pipe.wait(self._replication.min_replicas, self._replication.timeout_ms)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies


def _settle(answer: Any, acked: Any, min_replicas: int, on_short: OnShort) -> Any:
    if isinstance(answer, Exception):  # the script's own error, as a plain call raises it
        raise answer
    if isinstance(acked, redis.ResponseError) and DEMOTED in str(acked):
        acked = 0  # the server became a replica (a stale master after a failover): not durable
    if isinstance(acked, Exception):
        raise acked
    if int(acked) < min_replicas:
        on_short(int(acked))
    return answer
