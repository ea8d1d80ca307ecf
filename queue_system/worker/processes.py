"""Process mode: sync processors run in child processes, where a timeout is a real kill.

``QueueWorker(executor="process")`` (``queue-system worker --executor process``) gives the
worker :class:`ProcessSlots` instead of threads for its sync processors (async ones and
callbacks still run in the worker process). Each slot is a child process started with the
"spawn" method (a fresh interpreter: no fork of a process that has threads and sockets); it
receives ``(processor, entity)`` over a pipe, runs it and sends back the result or the
exception. So:

* CPU-bound sync processors use every core instead of sharing the GIL;
* a processor that outlives its timeout is killed with its process (SIGKILL) and the run
  fails with ``TimeoutError`` (then retried per its retry config); the slot starts a fresh
  process for the next item. A worker stop that cancels a run kills it the same way.
* a processor is sent by reference (module and name, as pickle does), so it must be a
  module-level function, and its result and exceptions must pickle (JSON-able results do).
  ``contextvars`` and the worker's logging setup do not cross into the child, and, as with
  any "spawn" child, the main module is imported again: a script that runs a process-mode
  worker itself must do so under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
from typing import Any

from queue_system.worker.call import Function, OnStart, ThreadSlots

logger = logging.getLogger("queue_system.worker")

_SPAWN = multiprocessing.get_context("spawn")
STOP_JOIN_S = 1.0  # how long a killed child is waited for (it cannot refuse SIGKILL)


class ProcessDiedError(Exception):
    """The process running a processor ended without an answer (killed, or os._exit)."""


class _Child:
    """One slot's process and the parent's end of its pipe."""

    def __init__(self) -> None:
        parent_end, child_end = _SPAWN.Pipe()
        self.conn: multiprocessing.connection.Connection = parent_end
        self.process = _SPAWN.Process(target=_serve, args=(child_end,), daemon=True)
        self.process.start()
        child_end.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(STOP_JOIN_S)
        self.conn.close()


class ProcessSlots(ThreadSlots):
    """``size`` child processes for sync processors, with the interface of ThreadSlots.

    ``overdue`` stays 0: a run past its timeout is killed, so its slot is free at once.
    Use it from one event loop (created in the worker's ``start``).
    """

    def __init__(self, size: int, name: str) -> None:
        super().__init__(size, name)  # its semaphore bounds the slots; its threads start,
        self._idle: list[_Child] = []  # kill and join children (blocking calls)
        self._busy: set[_Child] = set()

    async def run(self, fn: Function, arg: Any, timeout_s: float, on_start: OnStart = None) -> Any:
        """``fn(arg)`` in a child process, killed if it runs past ``timeout_s``."""
        await self._free.acquire()
        child: _Child | None = None
        try:
            child = self._idle.pop() if self._idle else await asyncio.to_thread(_Child)
            self._busy.add(child)
            child.conn.send((fn, arg))  # pickles fn by reference: a local function fails here
            # The timeout starts once the child has the processor in hand: a fresh child
            # first starts an interpreter and imports the processor's module.
            kind, value = await _reply(child)
            if kind == "started":
                if on_start is not None:
                    on_start()
                try:
                    kind, value = await asyncio.wait_for(_reply(child), timeout_s)
                except asyncio.TimeoutError:
                    raise TimeoutError(
                        f"processor exceeded its {timeout_s}s timeout (its process was killed)"
                    ) from None
        except BaseException:
            if child is not None:  # timed out, cancelled, or broken: never reuse it
                self._busy.discard(child)
                await asyncio.shield(asyncio.to_thread(child.kill))
                child = None
            raise
        finally:
            if child is not None:
                self._busy.discard(child)
                self._idle.append(child)
            self._free.release()
        if kind == "error":
            raise value
        return value

    def shutdown(self) -> None:
        """End every child (a run still going is killed: its item was released)."""
        for child in [*self._idle, *self._busy]:
            child.kill()
        self._idle.clear()
        self._busy.clear()
        super().shutdown()


async def _reply(child: _Child) -> tuple[str, Any]:
    """The child's answer, waiting on its pipe without blocking the event loop."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    fd = child.conn.fileno()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    try:
        reply: tuple[str, Any] = child.conn.recv()
    except EOFError:
        child.process.join(STOP_JOIN_S)
        raise ProcessDiedError(
            f"the processor's process (pid {child.process.pid}) died "
            f"(exit code {child.process.exitcode})"
        ) from None
    return reply


def _serve(conn: multiprocessing.connection.Connection) -> None:
    """The child's loop: for each ``(fn, arg)`` received, say it started, run it, and send
    back the outcome."""
    while True:
        try:
            fn, arg = conn.recv()
        except EOFError:  # the worker is gone
            return
        except Exception as exc:  # e.g. the processor's module does not import here
            conn.send(("error", exc))
            continue
        conn.send(("started", None))
        try:
            outcome: tuple[str, Any] = ("ok", fn(arg))
        except Exception as exc:
            outcome = ("error", exc)
        try:
            conn.send(outcome)
        except Exception as exc:  # the result or exception does not pickle
            conn.send(("error", TypeError(f"cannot send the outcome back: {exc!r}")))
