"""The demo: 300 jobs across three priorities, one burst worker, progress, and where all ended.

Run: ``./scripts/demo``, or ``queue-system demo`` from an installed package (it ships inside
it), or ``python -m queue_system.cli.demo``.

Uses ``$REDIS_URL`` (or ``queue-system --url``) if set, else starts a throwaway local server
and says so; an unreachable server is one line and exit status 1. Every key lives
under a fresh prefix (``demo-<random>:``), so no other data is touched; on a server it did not
start, the demo deletes its keys at the end. The job mix, and so the end counts, are fixed:

* high   40 ``charge_card``    fail their first 1-2 runs, then succeed on retry (fixed 0.2 s)
* high   50 ``resize_image``   fast (``enqueue_batch``)
* normal 120 ``send_email``    fast, a sync processor: runs in the worker's thread pool
* normal 10 ``sync_crm``       always fail: 1 run + 2 retries, then ``failures``
* low    79 ``render_report``  slow, 0.05-0.2 s each
* low    1 job naming ``legacy.tasks:rebuild_index``, never registered: ``system_errors`` at
  once (``unknown_processor_ttl=0``; by default it would wait an hour for a deploy bringing it)
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from typing import Any

import redis

from queue_system import (
    AsyncQueueManager,
    QueueConfig,
    QueueManager,
    QueueRetryConfig,
    QueueWorker,
)
from queue_system.core.types import EnqueueResult
from queue_system.engine.connection import redact_url
from queue_system.engine.embedded_server import EmbeddedRedis
from queue_system.logs import setup_json_logging

PRIORITIES = ("high", "normal", "low")
PROGRESS_EVERY_S = 0.5
DEADLINE_S = 60.0  # give up (exit 1) if the worker has not finished by then
UNKNOWN_PROCESSOR = "legacy.tasks:rebuild_index"
# Queue names default to the processor's function name.
QUEUE_NAMES = [
    "charge_card",
    "resize_image",
    "send_email",
    "sync_crm",
    "render_report",
    "rebuild_index",
]

# Expected end state: (succeeded, failures, system_errors); the mix above fixes it.
EXPECTED = (289, 10, 1)

# Filled by the processors and callbacks (all run in this process).
runs_by_charge: Counter[str] = Counter()
callbacks: Counter[str] = Counter()


# --- processors (module level: they are stored by name "module:qualname") -------------------


async def charge_card(entity: dict[str, Any]) -> dict[str, Any]:
    """Fails the first ``entity['flaky_runs']`` runs of each charge, then succeeds."""
    runs_by_charge[entity["charge_id"]] += 1
    if runs_by_charge[entity["charge_id"]] <= entity["flaky_runs"]:
        raise ConnectionError("payment gateway timed out")
    return {"charged": entity["amount"]}


async def resize_image(entity: dict[str, Any]) -> str:
    await asyncio.sleep(0.005)
    return f"thumb-{entity['image']}.png"


def send_email(entity: dict[str, Any]) -> str:
    """A sync processor: the worker runs it in its thread pool, not on the event loop."""
    return f"sent to {entity['to']}"


async def sync_crm(entity: dict[str, Any]) -> None:
    raise ConnectionError(f"CRM rejected contact {entity['contact']}: HTTP 503")


async def render_report(entity: dict[str, Any]) -> str:
    await asyncio.sleep(entity["seconds"])
    return f"report {entity['report']} rendered"


async def on_success(data: dict[str, Any]) -> None:
    callbacks["success"] += 1


def on_failure(data: dict[str, Any]) -> None:
    callbacks["failure"] += 1


# --- the run ----------------------------------------------------------------------------------


def enqueue_jobs(queue: QueueManager) -> tuple[int, int]:
    """Put the fixed job mix on the queues; returns (jobs, Redis round trips)."""
    flaky = QueueRetryConfig.fixed(delay=0.2, max_attempts=3)
    doomed = QueueRetryConfig.custom(delays=[0.1, 0.2])  # 2 retries, then failures
    cb: dict[str, Any] = {"on_success": on_success, "on_failure": on_failure}
    results: list[EnqueueResult] = []
    calls = 0
    for i in range(40):
        entity = {"charge_id": f"ch_{i:03d}", "amount": 10 + i, "flaky_runs": 1 + i % 2}
        results.append(
            queue.enqueue(entity, charge_card, priority="high", retry_config=flaky, **cb)
        )
        calls += 1
    batches: list[tuple[list[dict[str, Any]], Any, str]] = [
        ([{"image": f"img_{i}"} for i in range(50)], resize_image, "high"),
        ([{"to": f"user{i}@example.com"} for i in range(120)], send_email, "normal"),
        (
            [{"report": i, "seconds": 0.05 + (i % 4) * 0.05} for i in range(79)],
            render_report,
            "low",
        ),
    ]
    for entities, processor, priority in batches:
        results += queue.enqueue_batch(entities, processor, priority=priority, **cb)
        calls += 1
    for i in range(10):
        results.append(queue.enqueue({"contact": i}, sync_crm, retry_config=doomed, **cb))
        calls += 1
    # A name no process registered: the worker cannot run it, so it goes to system_errors.
    results.append(queue.enqueue({"index": "all"}, UNKNOWN_PROCESSOR, priority="low"))
    calls += 1
    assert all(r["status"] == "queued" for r in results)
    return len(results), calls


def waiting_by_priority(config: QueueConfig, status: dict[str, int]) -> dict[str, int]:
    return {
        p: sum(status.get(config.get_queue_key(name, p), 0) for name in QUEUE_NAMES)
        for p in PRIORITIES
    }


async def progress_line(config: QueueConfig, aqueue: AsyncQueueManager, elapsed: float) -> str:
    status = await aqueue.get_queue_status()
    metrics = await asyncio.to_thread(config.get_metrics)
    waiting = waiting_by_priority(config, status)
    return (
        f"[{elapsed:4.1f}s] done {metrics['succeeded']:3d} | failed {metrics['failed']:2d}"
        f" | sys errors {metrics['system_errors']} | waiting {sum(waiting.values()):3d}"
        f" (high {waiting['high']}, normal {waiting['normal']}, low {waiting['low']})"
        f" | in flight {status[config.keys.inflight]:2d}"
        f" | delayed {status[config.keys.delayed]:2d} | retried {metrics['retried']}"
    )


async def run_worker(config: QueueConfig) -> bool:
    """Run one burst worker until every job is terminal, printing progress; False on timeout."""
    # wait_scheduled: the demo's retries are due in 0.2 s; the burst waits for them
    worker = QueueWorker(config, max_workers=20, burst=True, wait_scheduled=True)
    aqueue = AsyncQueueManager(config)
    started = time.monotonic()
    task = asyncio.create_task(worker.run())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY_S)
            elapsed = time.monotonic() - started
            print(await progress_line(config, aqueue, elapsed), flush=True)
            if elapsed > DEADLINE_S:
                await worker.stop()
                return False
        await task
    finally:
        await aqueue.aclose()
    return True


def dead_letter(config: QueueConfig, key: str) -> dict[str, Any] | None:
    raw = config.redis_client.lindex(key, 0)
    return json.loads(raw) if raw else None


def print_summary(config: QueueConfig, total: int) -> bool:
    """Print where every job ended and the metrics; True if the counts are the expected ones."""
    metrics = config.get_metrics()
    succeeded, failed, errors = metrics["succeeded"], metrics["failed"], metrics["system_errors"]
    print(f"\nWhere the {total} jobs ended:")
    print(f"  succeeded      {succeeded:4d}   (on_success callbacks: {callbacks['success']})")
    print(f"  failures       {failed:4d}   (on_failure callbacks: {callbacks['failure']})")
    print(f"  system_errors  {errors:4d}")
    print(f"  total          {succeeded + failed + errors:4d}   (enqueued: {metrics['enqueued']})")

    error = dead_letter(config, config.keys.system_errors)
    if error:
        print(f"\nsystem error:  [{error['reason']}] {error['message']}")
    failure = dead_letter(config, config.keys.failures)
    if failure:
        runs = " -> ".join(f"{a['error_type']}" for a in failure["history"])
        print(
            f"one failure:   {failure['processor']} after {len(failure['history'])} runs "
            f"({runs}): {failure['message']}"
        )

    print("\nMetrics (config.get_metrics()):")
    print(f"  success_rate      {metrics['success_rate']:.1f} %")
    print(f"  avg_process_time  {metrics['avg_process_time']:.1f} ms")
    print(f"  processed {metrics['processed']}, retried {metrics['retried']}")
    for priority in PRIORITIES:
        rows = [q[priority] for q in metrics["queues"].values() if priority in q]
        done = sum(r["processed"] for r in rows)
        wait = sum(r["avg_wait_ms"] * r["processed"] for r in rows) / done if done else 0.0
        print(f"  avg wait {priority:<6}   {wait:7.1f} ms  over {done} runs")

    ok = (succeeded, failed, errors) == EXPECTED and succeeded + failed + errors == total
    ok = ok and metrics["enqueued"] == total and callbacks["success"] == succeeded
    ok = ok and callbacks["failure"] == failed
    return ok


def publish_metrics(config: QueueConfig) -> None:
    """Log the run's totals as metric records (what a dashboard in OpenSearch would read)."""
    metrics = config.get_metrics()
    for name in ("succeeded", "failed", "system_errors", "retried"):
        config.update_metric(name, metrics[name])
    config.update_metric("avg_process_time", metrics["avg_process_time"])
    config.update_metric("success_rate", metrics["success_rate"], force_log=True)


def print_json_logs(metric_lines: io.StringIO, library_log: io.StringIO) -> None:
    lines = metric_lines.getvalue().splitlines()
    shown = lines[-6:]
    print(
        f"\nJSON metric log lines (last {len(shown)} of {len(lines)}; host/pid/worker_id elided):"
    )
    for line in shown:
        record = json.loads(line)
        for noisy in ("logger", "host", "pid", "worker_id"):
            record.pop(noisy, None)
        if isinstance(record.get("metric_value"), float):
            record["metric_value"] = round(record["metric_value"], 2)
        print("  " + json.dumps(record, separators=(",", ":")))
    levels = Counter(line.split(" ", 1)[0] for line in library_log.getvalue().splitlines())
    if levels:
        counts = ", ".join(f"{n} {level}" for level, n in sorted(levels.items()))
        print(f"Library log (logger queue_system, WARNING and up): {counts}")


def configure_logging(stack: ExitStack) -> tuple[io.StringIO, io.StringIO]:
    """JSON metric records and the library's warnings go to buffers, printed at the end;
    nothing reaches the handlers already there (the CLI's), until the demo ends."""
    metrics, library = logging.getLogger("queue_system.metrics"), logging.getLogger("queue_system")
    saved = (metrics.level, metrics.propagate, library.level, library.propagate, library.handlers)
    metric_lines = io.StringIO()
    metric_handler = setup_json_logging("INFO", stream=metric_lines, logger_name=metrics.name)
    metrics.propagate = False
    library_log = io.StringIO()
    handler = logging.StreamHandler(library_log)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    library.handlers = [handler]
    library.setLevel(logging.WARNING)
    library.propagate = False

    def restore() -> None:
        metrics.removeHandler(metric_handler)
        metrics.level, metrics.propagate = saved[0], saved[1]
        library.level, library.propagate, library.handlers = saved[2], saved[3], saved[4]

    stack.callback(restore)
    return metric_lines, library_log


def reachable(config: QueueConfig, url: str) -> bool:
    """True if the server answers; else one line saying so."""
    try:
        config.redis_client.ping()
    except redis.RedisError as exc:
        print(f"cannot reach Redis at {redact_url(url)}: {exc}", file=sys.stderr)
        return False
    return True


def delete_keys(config: QueueConfig) -> int:
    keys = list(config.redis_client.scan_iter(match=f"{config.queue_prefix}*", count=1000))
    return int(config.redis_client.delete(*keys)) if keys else 0


def main(url: str | None = None) -> int:
    """Run the demo on ``url`` (None: a throwaway local server); the exit status."""
    with ExitStack() as stack:
        metric_lines, library_log = configure_logging(stack)
        prefix = f"demo-{uuid.uuid4().hex[:8]}:"
        if url:
            config = QueueConfig(redis_url=url, queue_prefix=prefix, unknown_processor_ttl=0)
            stack.callback(config.redis_client.close)
            if not reachable(config, url):
                return 1
            print(f"Using $REDIS_URL: {config!r}")  # the repr never shows a password
            # Not our server: delete the demo's keys (callbacks run last-in first-out).
            stack.callback(lambda: print(f"Deleted the demo's {delete_keys(config)} keys."))
        else:
            server = stack.enter_context(EmbeddedRedis())
            print(f"No REDIS_URL set: started a throwaway server at {server.url} ({server.binary})")
            config = QueueConfig(redis_url=server.url, queue_prefix=prefix, unknown_processor_ttl=0)
            stack.callback(config.redis_client.close)
        queue = QueueManager(config)

        started = time.monotonic()
        total, calls = enqueue_jobs(queue)
        took_ms = (time.monotonic() - started) * 1000
        print(f"Enqueued {total} jobs under prefix {prefix!r} in {calls} calls ({took_ms:.0f} ms)")
        print("Running one worker (max_workers=20, burst mode) until every job is terminal...")
        if not asyncio.run(run_worker(config)):
            print(f"FAILED: the worker did not finish within {DEADLINE_S:.0f}s")
            return 1
        print(f"Worker finished in {time.monotonic() - started:.1f}s.")

        ok = print_summary(config, total)
        publish_metrics(config)
        print_json_logs(metric_lines, library_log)
        if not ok:
            print(f"\nFAILED: expected succeeded/failures/system_errors = {EXPECTED}")
            return 1
        print("\nOK: every job ended in exactly one place; nothing was lost.")
        return 0


if __name__ == "__main__":
    sys.exit(main(os.environ.get("REDIS_URL")))
