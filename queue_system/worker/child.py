"""One worker process under a supervisor, or with recycling limits.

A worker started by :mod:`queue_system.worker.supervisor` (``queue-system worker
--processes N``) differs from a lone one in three ways, all here:

* its heartbeat record names its supervisor (``workers`` shows which children belong to
  which supervisor);
* it stops gracefully on its own once a recycling limit is reached (``--max-jobs``,
  ``--max-memory``): running items finish, items claimed ahead go back at once, exactly as
  on SIGTERM; the supervisor then starts a fresh process;
* it stops gracefully if its supervisor is gone (the supervisor was SIGKILLed: the child,
  in its own process group, got no signal and must not run unsupervised for ever).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
from dataclasses import dataclass
from typing import Any

from queue_system.worker.loops import QueueWorker

logger = logging.getLogger("queue_system.worker")

# A supervised child that reached a recycling limit exits with this status (EX_TEMPFAIL):
# the supervisor replaces it at once, without counting a death.
RECYCLE_EXIT_CODE = 75
JOBS_CHECK_INTERVAL_S = 0.1  # how often the finished-jobs count is compared with max_jobs
MEMORY_CHECK_INTERVAL_S = 1.0  # how often the RSS is read (one small /proc read)
PARENT_CHECK_INTERVAL_S = 1.0  # how often a child checks that its supervisor is alive
MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class RecycleLimits:
    """When a worker process stops to be replaced by a fresh one (None: no limit).

    Args:
        max_jobs: finished jobs (succeeded, or failed for good) after which it stops; checked
            every 0.1 s, and running items finish, so it stops after about this many.
        max_memory_mb: resident memory (MiB) above which it stops; checked every second,
            once it has finished at least one job (a fresh process has nothing to give back).
    """

    max_jobs: int | None = None
    max_memory_mb: float | None = None

    def __post_init__(self) -> None:
        if self.max_jobs is not None and (
            isinstance(self.max_jobs, bool) or not isinstance(self.max_jobs, int)
        ):
            raise TypeError(f"max_jobs must be an int or None, got {self.max_jobs!r}")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1 or None, got {self.max_jobs!r}")
        if self.max_memory_mb is not None and not self.max_memory_mb > 0:
            raise ValueError(f"max_memory_mb must be > 0 MiB or None, got {self.max_memory_mb!r}")

    @property
    def any(self) -> bool:
        """True if some limit is set."""
        return self.max_jobs is not None or self.max_memory_mb is not None


def rss_mb() -> float:
    """This process's resident memory in MiB: ``/proc/self/statm`` where it exists (Linux),
    else the peak RSS from ``getrusage`` (never below the current one)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        return peak / MIB if sys.platform == "darwin" else peak / 1024


def jobs_finished(worker: QueueWorker) -> int:
    """Jobs the worker finished since it started (succeeded, or failed for good)."""
    record = worker.heartbeat_record()
    return int(record["jobs_done"]) + int(record["jobs_failed"])


class SupervisedWorker(QueueWorker):
    """A :class:`QueueWorker` whose heartbeat record names its supervisor."""

    def __init__(self, *args: Any, supervisor_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.supervisor_id = supervisor_id

    def heartbeat_record(self) -> dict[str, str | int | float]:
        """The worker's record, plus the ``supervisor`` that started this process."""
        return {**super().heartbeat_record(), "supervisor": self.supervisor_id}


def limit_reached(worker: QueueWorker, limits: RecycleLimits, *, check_memory: bool) -> str | None:
    """Why the worker should be recycled now, or None."""
    done = jobs_finished(worker)
    if limits.max_jobs is not None and done >= limits.max_jobs:
        return f"finished {done} jobs (--max-jobs {limits.max_jobs})"
    if check_memory and limits.max_memory_mb is not None:
        rss = rss_mb()
        if rss > limits.max_memory_mb:
            return f"RSS {rss:.1f} MiB is above --max-memory {limits.max_memory_mb:g} MiB"
    return None


async def _started(worker: QueueWorker) -> None:
    while not worker.running:  # run() is starting it
        await asyncio.sleep(JOBS_CHECK_INTERVAL_S)


async def watch(
    worker: QueueWorker, limits: RecycleLimits, *, parent_pid: int | None = None
) -> str | None:
    """Stop ``worker`` gracefully once a limit is reached or the process whose pid was
    ``parent_pid`` (the supervisor) is no longer our parent; returns why, or None if the
    worker stopped for another reason. Run it beside ``worker.run()``."""
    await _started(worker)
    if limits.max_memory_mb is not None and rss_mb() > limits.max_memory_mb:
        logger.warning(
            "worker %s: RSS at start (%.1f MiB) is already above --max-memory %g MiB: it "
            "will be recycled after every job",
            worker.worker_id,
            rss_mb(),
            limits.max_memory_mb,
        )
    loop = asyncio.get_running_loop()
    next_memory, next_parent = 0.0, 0.0
    while worker.running:
        now = loop.time()
        reason = None
        if parent_pid is not None and now >= next_parent:
            next_parent = now + PARENT_CHECK_INTERVAL_S
            if os.getppid() != parent_pid:  # reparented: the supervisor died
                reason = f"its supervisor (pid {parent_pid}) is gone"
        # A fresh process has nothing to give back: memory counts after a first finished job.
        check_memory = now >= next_memory and jobs_finished(worker) > 0
        if check_memory:
            next_memory = now + MEMORY_CHECK_INTERVAL_S
        reason = reason or limit_reached(worker, limits, check_memory=check_memory)
        if reason is not None:
            logger.warning(
                "worker %s: %s; stopping (running items finish, the rest go back)",
                worker.worker_id,
                reason,
            )
            # Shielded: a SIGTERM arriving now cancels this watcher, and must not cut the
            # graceful stop short (running items would be abandoned to lease expiry); the
            # signal's own stop() waits for this one.
            await asyncio.shield(worker.stop())
            return reason
        await asyncio.sleep(JOBS_CHECK_INTERVAL_S)
    return None
