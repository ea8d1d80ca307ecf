"""FaultProxy: a TCP proxy on 127.0.0.1 between the library and the test's server, for faults.

Real faults, injected on the wire (never a mock):

* :meth:`drop_reply` - forward the next request that contains a byte pattern, let the server run
  it, throw its reply away and reset the client's connection. The client cannot tell whether
  the command ran, and redis-py's ``Retry`` (or ours) sends it again: the "lost reply" case.
* :meth:`reset_all` - reset (RST) every open connection at once.
* :meth:`blackhole` / :meth:`restore` - stop moving bytes either way (connections stay open,
  nothing is lost: held bytes flow again on restore), like a network partition or a stall.
* :meth:`hold_reply` - delay the reply of the next request matching a pattern by some seconds
  (a server stall as the client sees it: longer than ``connection_timeout`` means a timeout).

``requests_matching(pattern)`` counts the client chunks that contained a pattern, so a test can
prove a command was re-sent. Loopback only; every thread ends on :meth:`close`.

Example::

    with FaultProxy(server.port) as proxy:
        config = QueueConfig(redis_url=proxy.url)
        proxy.drop_reply(b"EVALSHA")      # the next script call runs, its reply is lost
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from queue_system.engine.embedded_server import StartStop

CHUNK = 65536
POLL_S = 0.02  # how often idle pumps check for a new fault or a close


@dataclass
class _Rule:
    """One pending fault on the next request containing ``pattern``."""

    pattern: bytes
    action: str  # "drop" or "hold"
    hold_s: float = 0.0
    fired: threading.Event = field(default_factory=threading.Event)


class FaultProxy(StartStop):
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream_port>, with faults on demand."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        if upstream_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("FaultProxy forwards to loopback addresses only")
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._open = threading.Event()  # set = bytes flow; clear = blackholed
        self._open.set()
        self._closed = threading.Event()
        self._seen: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: give this to the library instead of the server's."""
        return f"redis://127.0.0.1:{self.port}/0"

    # --- faults -------------------------------------------------------------------------------

    def drop_reply(self, pattern: bytes) -> threading.Event:
        """Lose the reply of the next request containing ``pattern`` (after the server ran it),
        then reset that client connection. Returns an event set once the fault fired."""
        rule = _Rule(pattern, "drop")
        with self._lock:
            self._rules.append(rule)
        return rule.fired

    def hold_reply(self, pattern: bytes, seconds: float) -> threading.Event:
        """Deliver the reply to the next request containing ``pattern`` ``seconds`` late."""
        rule = _Rule(pattern, "hold", seconds)
        with self._lock:
            self._rules.append(rule)
        return rule.fired

    def reset_all(self) -> int:
        """Reset every open connection (client and server side); returns how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    def blackhole(self) -> None:
        """Stop forwarding in both directions until :meth:`restore` (bytes are held, not lost)."""
        self._open.clear()

    def restore(self) -> None:
        """End a :meth:`blackhole`."""
        self._open.set()

    def requests_matching(self, pattern: bytes) -> int:
        """How many client chunks so far contained ``pattern``."""
        with self._lock:
            return sum(pattern in chunk for chunk in self._seen)

    @property
    def connections(self) -> int:
        """Connections currently open through the proxy."""
        with self._lock:
            return len(self._pairs)

    # --- plumbing -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(True)
            with self._lock:
                self._pairs.append((client, upstream))
            thread = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _take_rule(self, chunk: bytes) -> _Rule | None:
        with self._lock:
            self._seen.append(chunk)
            for rule in self._rules:
                if rule.pattern in chunk:
                    self._rules.remove(rule)
                    return rule
        return None

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        pending: _Rule | None = None  # a fault waiting for the server's next reply
        try:
            while not self._closed.is_set():
                if not self._open.wait(POLL_S):
                    continue
                for key, _ in selector.select(POLL_S):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    target: socket.socket = key.data
                    try:
                        chunk = source.recv(CHUNK)
                    except OSError:
                        return
                    if not chunk:
                        return
                    if source is client:
                        rule = self._take_rule(chunk)
                        if rule is not None:
                            pending = rule
                    elif pending is not None:
                        rule, pending = pending, None
                        if rule.action == "drop":
                            rule.fired.set()
                            return  # the reply is dropped; finally resets both sides
                        rule.fired.set()
                        time.sleep(rule.hold_s)
                    try:
                        target.sendall(chunk)
                    except OSError:
                        return
        finally:
            selector.close()
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))
            _reset(client)
            _reset(upstream)

    def close(self) -> None:
        """Stop accepting, reset every connection, and end every thread."""
        self._closed.set()
        self._open.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset_all()
        self._accepter.join(timeout=2)
        for thread in self._threads:
            thread.join(timeout=2)

    def start(self) -> FaultProxy:
        """Nothing to do: the proxy listens from its construction (for ``with``)."""
        return self

    def stop(self) -> None:
        """Same as :meth:`close` (for ``with``)."""
        self.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
