"""Supervisor: N worker processes for one application (``queue-system worker --processes N``).

Each child is the ordinary single-process worker, ``python -m queue_system worker APP ...``,
started as a subprocess rather than with multiprocessing. Why:

* a child is exactly the worker operators already run (same app loading, logging, signal
  handling and exit codes), so there is one code path to test, and nothing to pickle (a
  ``QueueConfig`` holds clients, a clock and callables): each child imports the app itself;
* it is a fresh interpreter (like multiprocessing's "spawn"): no fork of a process that has
  threads or open connections;
* each child runs in its own session, so a Ctrl+C at the terminal reaches the supervisor only
  and each child gets exactly one forwarded signal (two would mean "stop at once").

The supervisor:

* restarts a child that dies (killed, or exited non-zero), after a backoff per slot (0.5 s
  doubling to 30 s, reset once a child has run 60 s); ``restart_limit`` deaths within
  ``restart_window_s`` is a crash loop: the children are stopped gracefully and
  :class:`~queue_system.errors.WorkerCrashLoopError` is raised (the CLI exits 1);
* replaces at once a child that exits with RECYCLE_EXIT_CODE (it reached ``--max-jobs`` or
  ``--max-memory`` and stopped gracefully; see :mod:`queue_system.worker.child`);
* does not restart a child that exits 0 (a burst run that found nothing left) and returns
  once every child has;
* forwards SIGTERM/SIGINT: the children stop gracefully; on a second signal it sends them
  SIGQUIT (a child stops at once, releasing running items; a distinct signal, because two
  equal ones sent before the child is scheduled are delivered as one), and a child still
  alive FORCE_KILL_AFTER_S later is SIGKILLed (its leases expire, its items come back).

Items are never at risk from the supervisor itself: a child that dies holds leases, which
expire and return the items (``QueueConfig(lease_timeout=...)``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from queue_system.core.checks import validate_queue_name
from queue_system.engine.outage import Backoff
from queue_system.errors import WorkerCrashLoopError
from queue_system.logs import LOG_FORMATS
from queue_system.worker.child import RECYCLE_EXIT_CODE, RecycleLimits
from queue_system.worker.loops import DEFAULT_GRACE_PERIOD_S, EXECUTORS

logger = logging.getLogger("queue_system.supervisor")

RESTART_BACKOFF_MIN_S, RESTART_BACKOFF_MAX_S = 0.5, 30.0  # before restarting a dead child
HEALTHY_RUN_S = 60.0  # a child that ran this long resets its slot's backoff
DEFAULT_RESTART_LIMIT = 5  # this many deaths within DEFAULT_RESTART_WINDOW_S: a crash loop
DEFAULT_RESTART_WINDOW_S = 60.0
FORCE_KILL_AFTER_S = 10.0  # after the second signal, a child still alive this long is killed
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where known), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_processes(value: int | str) -> int:
    """``processes`` as a count: an int >= 1, or ``"auto"`` for :func:`cpu_count`."""
    if value == "auto":
        return cpu_count()
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1 or str(count) != str(value).strip():
        raise ValueError(f"processes must be an int >= 1 or 'auto', got {value!r}")
    return count


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """How each child runs: the options of ``queue-system worker`` (same names, same defaults).

    ``max_jobs`` / ``max_memory_mb`` recycle a child (see
    :class:`~queue_system.worker.child.RecycleLimits`).
    """

    queues: Sequence[str] | None = None
    concurrency: int = 5
    burst: bool = False
    wait_scheduled: bool = False
    outage_limit: float | None = None
    grace_period: float = DEFAULT_GRACE_PERIOD_S
    work_timeout: float = 30.0
    max_jobs: int | None = None
    max_memory_mb: float | None = None
    log_level: str = "info"
    log_format: str = "json"
    metrics_log: bool = False
    executor: str = "thread"
    #: Child ``i`` serves its worker metrics on ``metrics_port + i`` (None: not served).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        # A bad setting would make every child exit 2: refuse it here, before any starts.
        if isinstance(self.queues, str):
            raise TypeError("queues must be a list of queue names, not a str")
        for name in self.queues or ():
            validate_queue_name(name)
        count = self.concurrency
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {count!r}")
        if self.wait_scheduled and not self.burst:
            raise ValueError("wait_scheduled only applies with burst=True")
        if self.outage_limit is not None and not self.outage_limit > 0:
            raise ValueError(f"outage_limit must be > 0 seconds, got {self.outage_limit!r}")
        if not self.grace_period >= 0:
            raise ValueError(f"grace_period must be >= 0 seconds, got {self.grace_period!r}")
        if not self.work_timeout > 0:
            raise ValueError(f"work_timeout must be > 0 seconds, got {self.work_timeout!r}")
        RecycleLimits(max_jobs=self.max_jobs, max_memory_mb=self.max_memory_mb)
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {LOG_FORMATS}, got {self.log_format!r}")
        port = self.metrics_port
        if port is not None and (isinstance(port, bool) or not 0 < port <= 65535):
            raise ValueError(f"metrics_port must be an int in 1..65535, got {port!r}")

    def argv(self) -> list[str]:
        """The ``queue-system worker`` options that give a child these settings."""
        args = [
            f"--concurrency={self.concurrency}",
            f"--grace-period={self.grace_period!r}",
            f"--work-timeout={self.work_timeout!r}",
            f"--log-level={self.log_level}",
            f"--log-format={self.log_format}",
            f"--executor={self.executor}",
        ]
        if self.queues is not None:
            args.append(f"--queues={','.join(self.queues)}")
        if self.outage_limit is not None:
            args.append(f"--outage-limit={self.outage_limit!r}")
        if self.max_jobs is not None:
            args.append(f"--max-jobs={self.max_jobs}")
        if self.max_memory_mb is not None:
            args.append(f"--max-memory={self.max_memory_mb!r}")
        flags = {
            "--burst": self.burst,
            "--wait-scheduled": self.wait_scheduled,
            "--metrics-log": self.metrics_log,
        }
        return args + [flag for flag, on in flags.items() if on]

    def slot_argv(self, slot: int) -> list[str]:
        """The options only child ``slot`` gets: its own metrics port (``metrics_port + slot``)."""
        if self.metrics_port is None:
            return []
        return [f"--metrics-port={self.metrics_port + slot}", f"--metrics-host={self.metrics_host}"]


class Supervisor:
    """Keeps ``processes`` worker processes running for the app ``config_spec``.

    Args:
        config_spec: ``'module:attribute'`` naming the application's QueueConfig; each child
            imports it (from the current directory or ``PYTHONPATH``).
        processes: how many children run at once.
        options: how each child runs.
        restart_limit: deaths within ``restart_window_s`` that make a crash loop.
        restart_window_s: see ``restart_limit``.
        python: the interpreter that runs each child (default: this process's).
    """

    def __init__(
        self,
        config_spec: str,
        processes: int,
        options: WorkerOptions | None = None,
        *,
        restart_limit: int = DEFAULT_RESTART_LIMIT,
        restart_window_s: float = DEFAULT_RESTART_WINDOW_S,
        python: str | None = None,
    ) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an int >= 1, got {processes!r}")
        if isinstance(restart_limit, bool) or not isinstance(restart_limit, int):
            raise TypeError(f"restart_limit must be an int, got {restart_limit!r}")
        if restart_limit < 1:
            raise ValueError(f"restart_limit must be >= 1, got {restart_limit!r}")
        if not restart_window_s > 0:
            raise ValueError(f"restart_window_s must be > 0 seconds, got {restart_window_s!r}")
        self.config_spec = config_spec
        self.processes = processes
        self.options = options or WorkerOptions()
        self.restart_limit = restart_limit
        self.restart_window_s = float(restart_window_s)
        self.python = python or sys.executable
        self.supervisor_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.children: dict[int, asyncio.subprocess.Process] = {}  # slot -> live child
        self._deaths: collections.deque[float] = collections.deque()
        self._signals = 0
        self._failure: WorkerCrashLoopError | None = None
        self._stopping: asyncio.Event | None = None

    def child_argv(self, slot: int = 0) -> list[str]:
        """The command line of child ``slot``."""
        return [
            self.python,
            "-m",
            "queue_system",
            "worker",
            self.config_spec,
            *self.options.argv(),
            *self.options.slot_argv(slot),
            f"--supervised-by={self.supervisor_id}",
        ]

    async def run(self) -> None:
        """Run the children until stopped (or, in burst mode, until every child is done).

        Handles SIGTERM/SIGINT when run in the main thread (see the module doc).

        Raises:
            WorkerCrashLoopError: children kept dying; they were stopped.
        """
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread()
        if handled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.on_signal, sig)
        logger.info(
            "supervisor %s starting %d worker processes for %s",
            self.supervisor_id,
            self.processes,
            self.config_spec,
        )
        try:
            slots = [asyncio.create_task(self._keep_alive(s)) for s in range(self.processes)]
            await asyncio.gather(*slots)
        finally:
            if handled:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            for child in self.children.values():  # only if run() itself was cancelled
                _send(child, signal.SIGKILL)
        logger.info("supervisor %s stopped", self.supervisor_id)
        if self._failure is not None:
            raise self._failure

    def on_signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM/SIGINT: the first stops the children gracefully, the second at once."""
        self._signals += 1
        if self._signals == 1:
            logger.warning(
                "supervisor %s: %s: stopping %d workers (grace period %ss); send again to "
                "stop at once",
                self.supervisor_id,
                sig.name,
                len(self.children),
                self.options.grace_period,
            )
            self.stop(sig)
            return
        logger.warning(
            "supervisor %s: %s again: stopping the workers at once (killed if still alive in %gs)",
            self.supervisor_id,
            sig.name,
            FORCE_KILL_AFTER_S,
        )
        for child in self.children.values():
            # Not the same signal again: two sent before the child runs arrive as one.
            _send(child, signal.SIGQUIT)
        asyncio.get_running_loop().call_later(FORCE_KILL_AFTER_S, self._kill_all)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Start no more children and send ``sig`` (a graceful stop) to each live one."""
        assert self._stopping is not None, "stop() before run()"
        if self._stopping.is_set():
            return
        self._stopping.set()
        for child in self.children.values():
            _send(child, sig)

    def _kill_all(self) -> None:
        for child in self.children.values():
            logger.error(
                "supervisor %s: worker pid %d still alive; killing it",
                self.supervisor_id,
                child.pid,
            )
            _send(child, signal.SIGKILL)

    async def _keep_alive(self, slot: int) -> None:
        """Run one slot's child, replacing it as the module doc says, until stopping."""
        assert self._stopping is not None
        loop = asyncio.get_running_loop()
        backoff = Backoff(RESTART_BACKOFF_MIN_S, RESTART_BACKOFF_MAX_S)
        status: int | None  # None: the child could not even start
        while not self._stopping.is_set():
            started = loop.time()
            try:
                pid, code = await self._run_child(slot)
            except OSError as exc:  # fork/exec failed (EAGAIN, ENOMEM): a death like any other
                what, status, cause = "a new worker process", None, f"could not start: {exc}"
            else:
                what, status, cause = f"worker pid {pid}", code, describe(code)
            if self._stopping.is_set():
                level = logging.INFO if status == 0 else logging.WARNING
                logger.log(level, "%s stopped (%s)", what, cause)
                return
            if status == 0:
                logger.info("%s finished (exit 0); not restarted", what)
                return
            if status == RECYCLE_EXIT_CODE:
                logger.info("%s recycled; starting a fresh one", what)
                backoff.reset()
                continue
            if loop.time() - started >= HEALTHY_RUN_S:
                backoff.reset()
            if self._crash_looping(loop.time()):
                self._failure = WorkerCrashLoopError(
                    f"{len(self._deaths)} worker processes died within "
                    f"{self.restart_window_s:g}s (last: {what}, {cause}); the supervisor stopped"
                )
                logger.critical("supervisor %s: %s", self.supervisor_id, self._failure)
                self.stop()
                return
            delay = backoff.next()
            logger.error("%s died (%s); restarting it in %gs", what, cause, delay)
            with contextlib.suppress(asyncio.TimeoutError):  # not the builtin before 3.11
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_child(self, slot: int) -> tuple[int, int]:
        """Start slot's child and wait for it to end; its pid and wait status."""
        assert self._stopping is not None
        child = await asyncio.create_subprocess_exec(*self.child_argv(slot), start_new_session=True)
        self.children[slot] = child
        logger.info("supervisor %s: started worker pid %d", self.supervisor_id, child.pid)
        if self._stopping.is_set():  # a signal came while it was starting
            _send(child, signal.SIGTERM)
        try:
            return child.pid, await child.wait()
        finally:
            del self.children[slot]

    def _crash_looping(self, now: float) -> bool:
        """Count a death; True once ``restart_limit`` fall within the window."""
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.restart_window_s:
            self._deaths.popleft()
        return len(self._deaths) >= self.restart_limit


def describe(status: int) -> str:
    """A child's wait status as words: ``exit 1`` or ``killed by SIGKILL``."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit {status}"


def _send(child: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        child.send_signal(sig)


def run_workers(
    config_spec: str,
    processes: int | Literal["auto"] = "auto",
    *,
    restart_limit: int = DEFAULT_RESTART_LIMIT,
    restart_window_s: float = DEFAULT_RESTART_WINDOW_S,
    **worker_options: object,
) -> None:
    """Run ``processes`` worker processes for an app and keep them running; blocks.

    The Python form of ``queue-system worker APP --processes N``. Each child is a fresh
    ``python -m queue_system worker config_spec ...`` process. SIGTERM/SIGINT (when called
    from the main thread) stop the children gracefully; a second signal stops them at once.

    Args:
        config_spec: ``'module:attribute'`` naming the application's QueueConfig.
        processes: an int >= 1, or ``"auto"`` (the CPUs this process may use).
        restart_limit: children dying this many times within ``restart_window_s`` (60 s)
            is a crash loop (default 5).
        restart_window_s: see ``restart_limit``.
        **worker_options: each child's settings, named as :class:`WorkerOptions` fields
            (``concurrency``, ``queues``, ``burst``, ``grace_period``, ``work_timeout``,
            ``max_jobs``, ``max_memory_mb``, ``executor``, ``log_level``, ``metrics_port``
            (child i serves its worker metrics on ``metrics_port + i``), ...).

    Raises:
        WorkerCrashLoopError: children kept dying; the supervisor stopped them.
        TypeError / ValueError: an unknown or invalid setting.
    """
    options = WorkerOptions(**worker_options)  # type: ignore[arg-type]
    supervisor = Supervisor(
        config_spec,
        parse_processes(processes),
        options,
        restart_limit=restart_limit,
        restart_window_s=restart_window_s,
    )
    asyncio.run(supervisor.run())
