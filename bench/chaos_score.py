"""The chaos soak's scoreboard: read the final state, decide each job's fate, print it.

A job's fate, from what the server holds once the soak has drained (bench/chaos.py):

* **completed**: ``on_success`` was called for it, or its status record says ``completed``;
* **failed**: it is in ``failures``; expected for the kinds that never succeed;
* **system error**: it is in ``system_errors`` (with the reason);
* otherwise **waiting**, **delayed** or **in flight** if it is in a list, the delayed set or
  the inflight hash; and if it is nowhere: **LOST**.

A **duplicate completion** is an operation id whose ``on_success`` ran more than once.
**Recovery time** runs from a worker's SIGKILL to the first end (success, failure, dead
letter) elsewhere of each item that worker held just before the kill.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import redis
from chaos_jobs import ENDS, FAILURE, KINDS, RUNS, SUCCESS, Job, retried

from queue_system.core.envelope import as_text
from queue_system.core.types import PRIORITIES
from queue_system.engine.keys import KeySpace

if TYPE_CHECKING:
    from chaos import Produced

OP_ID = re.compile(rb'\{"v":1,"id":"([A-Za-z0-9_.:\-]+)"')
READ_DEADLINE_S = 10.0
SHOWN_IDS = 10  # ids listed per problem in the scoreboard
SHOWN_MESSAGES = 6  # distinct log messages listed per level
OUTCOME_LINES = (
    "enqueued",
    "completed",
    "completed_without_on_success",
    "of_which_worker_killed_after_ack",
    "completed_unexpectedly",
    "failed",
    "failed_as_expected",
    "failed_unexpectedly",
    "system_errors",
    "lost",
    "duplicate_completions",
    "more_than_one_end",
    "still_waiting",
    "still_delayed",
    "still_in_flight",
    "runs_per_job_max",
    "jobs_run_more_than_once",
    "jobs_run_concurrently",
    "timed_out_run_overlapped_its_retry",
)


@dataclass(frozen=True, kw_only=True)
class Kill:
    """One worker SIGKILL: when (wall clock), whom, and the operations it held."""

    at: float
    pid: int
    held: list[str]


@dataclass(kw_only=True)
class State:
    """Everything the scoreboard reads from the server, once, at the end."""

    waiting: Counter[str] = field(default_factory=Counter)
    delayed: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    system_errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    records: dict[str, dict[str, str]] = field(default_factory=dict)  # op id -> status record
    runs: dict[str, list[tuple[float, int, float | None]]] = field(default_factory=dict)
    success: dict[str, list[float]] = field(default_factory=dict)
    failure_calls: dict[str, list[float]] = field(default_factory=dict)


def op_id_in(value: bytes | str) -> str | None:
    """The operation id of an envelope (or of ``"<list key>\\n<envelope>"``)."""
    found = OP_ID.search(value.encode() if isinstance(value, str) else value)
    return found.group(1).decode() if found else None


def server_version(r: redis.Redis) -> str:
    info = retried(lambda: r.info("server"), deadline_s=READ_DEADLINE_S)
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


def backlog(r: redis.Redis, keys: KeySpace) -> dict[str, int]:
    """Items waiting (every list), delayed and in flight right now."""
    names = sorted(as_text(n) for n in r.smembers(keys.registry))
    pipe = r.pipeline(transaction=False)
    for name in names:
        for priority in PRIORITIES:
            pipe.llen(keys.queue(name, priority))
    pipe.zcard(keys.delayed)
    pipe.hlen(keys.inflight)
    *lengths, delayed, in_flight = pipe.execute()
    return {"waiting": sum(lengths), "delayed": delayed, "in_flight": in_flight}


def read_state(r: redis.Redis, keys: KeySpace, op_ids: Iterable[str]) -> State:
    """Read the lists, sets, dead letters, status records and the soak's own records."""
    return retried(lambda: _read_state(r, keys, list(op_ids)), deadline_s=READ_DEADLINE_S)


def _read_state(r: redis.Redis, keys: KeySpace, op_ids: list[str]) -> State:
    state = State()
    names = sorted(as_text(n) for n in r.smembers(keys.registry))
    for name in names:
        for priority in PRIORITIES:
            state.waiting.update(_ids(r.lrange(keys.queue(name, priority), 0, -1)))
    state.delayed.update(_ids(cast("list[bytes]", r.zrange(keys.delayed, 0, -1))))
    state.in_flight.update(_ids(r.hvals(keys.inflight)))
    state.failures = _dead_letters(r.lrange(keys.failures, 0, -1))
    state.system_errors = _dead_letters(r.lrange(keys.system_errors, 0, -1))
    pipe = r.pipeline(transaction=False)
    for op_id in op_ids:
        pipe.hgetall(keys.operation(op_id))
    for op_id, record in zip(op_ids, pipe.execute(), strict=True):
        if record:
            state.records[op_id] = {as_text(k): as_text(v) for k, v in record.items()}
    ends = {as_text(k): float(v) for k, v in r.hgetall(ENDS).items()}
    for run_field, value in r.hgetall(RUNS).items():
        run = as_text(run_field)
        start, pid = as_text(value).split("|")
        state.runs.setdefault(run.rpartition("|")[0], []).append(
            (float(start), int(pid), ends.get(run))
        )
    state.success = _calls(r.hgetall(SUCCESS))
    state.failure_calls = _calls(r.hgetall(FAILURE))
    return state


def _ids(values: Iterable[bytes | str]) -> list[str]:
    return [op for op in map(op_id_in, values) if op is not None]


def _dead_letters(raw: list[bytes | str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in raw:
        try:
            record = json.loads(item)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("operation_id"), str):
            found[record["operation_id"]].append(record)
    return dict(found)


def _calls(raw: dict[bytes | str, bytes | str]) -> dict[str, list[float]]:
    calls: dict[str, list[float]] = defaultdict(list)
    for name, value in raw.items():
        calls[as_text(name).rpartition("|")[0]].append(float(as_text(value).split("|")[0]))
    return dict(calls)


def scan_logs(directory: Path) -> dict[str, Any]:
    """Counts of the workers' log records by level, and their most frequent messages."""
    levels: Counter[str] = Counter()
    messages: dict[str, Counter[str]] = defaultdict(Counter)
    other = 0
    for path in sorted(directory.glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                other += 1  # a traceback or a print, not a log record
                continue
            if not isinstance(record, dict):
                other += 1
                continue
            level = str(record.get("level", "?"))
            levels[level] += 1
            if level in ("WARNING", "ERROR", "CRITICAL"):
                messages[level][_shape(str(record.get("message", "")))] += 1
    return {
        "levels": dict(levels),
        "other_lines": other,
        "top": {lvl: c.most_common(SHOWN_MESSAGES) for lvl, c in sorted(messages.items())},
    }


def _shape(message: str) -> str:
    """A message with its ids and numbers blanked, so the same event counts once."""
    shaped = re.sub(r"\S+:\d+:[0-9a-f]{8}(:\d+)?", "<token>", message)
    shaped = re.sub(r"\b[0-9a-f]{16,}\b|c\d+-\d+(-twin)?", "<id>", shaped)
    return re.sub(r"\d+(\.\d+)?", "#", shaped)[:160]


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (``inf`` for an item never recovered); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _expected(
    jobs: list[Job], produced: Produced, state: State
) -> tuple[dict[str, Job], dict[str, int]]:
    """Which operations were stored (and so must end somewhere), and how the enqueues went."""
    expected: dict[str, Job] = {}
    tally: Counter[str] = Counter()
    for job in jobs:
        answer = produced.results.get(job.op_id)
        if answer is None:
            continue
        if answer["status"] == "queued":
            expected[job.op_id] = job
            if job.twin_of is not None:
                tally["twins_stored"] += 1
                # Legitimate only if the original had already ended (its dedup key freed).
                original_end = _first_end_after(job.twin_of, 0.0, state)
                if original_end is None or original_end > answer["returned_at"]:
                    tally["twins_stored_while_original_live"] += 1
        elif answer["operation_id"] == job.op_id:
            expected[job.op_id] = job  # a re-sent enqueue found its own first copy
            tally["duplicate_of_itself"] += 1
        elif job.twin_of is not None and answer["operation_id"] == job.twin_of:
            tally["twins_refused"] += 1
        else:
            tally["duplicate_of_another"] += 1
    by_id = {job.op_id: job for job in jobs}
    for op_id in produced.failed:
        seen = (
            op_id in state.records
            or op_id in state.runs
            or op_id in state.waiting
            or op_id in state.delayed
            or op_id in state.in_flight
        )
        if seen:
            expected[op_id] = by_id[op_id]
            tally["stored_although_enqueue_raised"] += 1
    tally["gave_up"] = len(produced.failed)
    tally["never_sent"] = len(jobs) - len(produced.results) - len(produced.failed)
    tally["retried"] = produced.retried
    tally["calls"] = produced.calls
    if produced.requests_seen is not None:
        # More requests on the wire than calls made: the client library sent some again
        # (redis-py's Retry, the guard's retry, or a reload after NOSCRIPT).
        tally["resent_by_the_library"] = produced.requests_seen - produced.calls
    return expected, dict(tally)


def _overlap(runs: list[tuple[float, int, float | None]], timeout_s: float | None) -> str | None:
    """Whether two finished runs of one operation ran at the same time: None if not,
    ``"after_timeout"`` if one of them had outlived its timeout (a sync processor's thread
    cannot be stopped, so the retry starts while it still runs), else ``"concurrent"``."""
    spans = sorted((start, end) for start, _, end in runs if end is not None)
    latest: tuple[float, float] | None = None
    for span in spans:
        if latest is not None and span[0] < latest[1]:
            long_run = (
                timeout_s is not None and max(latest[1] - latest[0], span[1] - span[0]) > timeout_s
            )
            return "after_timeout" if long_run else "concurrent"
        if latest is None or span[1] > latest[1]:
            latest = span
    return None


def _first_end_after(op_id: str, at: float, state: State) -> float | None:
    ends = [*state.success.get(op_id, []), *state.failure_calls.get(op_id, [])]
    for record in [*state.failures.get(op_id, []), *state.system_errors.get(op_id, [])]:
        if isinstance(record.get("at"), (int, float)):
            ends.append(float(record["at"]))
    finished = state.records.get(op_id, {}).get("finished_at")
    if finished:
        ends.append(float(finished))
    later = [t for t in ends if t > at]
    return min(later) if later else None


def _recovery(kills: list[Kill], state: State, kinds: dict[str, str]) -> dict[str, Any]:
    """Recovery times of the items each killed worker held: to their first end elsewhere
    (``quick``: the kinds whose successful run is short, so the time is the engine's, and
    ``all``), and to their first run elsewhere (``rerun``)."""
    ends: list[tuple[float, str]] = []
    reruns: list[float] = []
    timelines: dict[str, str] = {}
    before = 0
    for kill in kills:
        for op_id in kill.held:
            end = _first_end_after(op_id, kill.at, state)
            if end is None and _first_end_after(op_id, 0.0, state) is not None:
                before += 1  # it finished just before the kill: nothing to recover
                continue
            ends.append((math.inf if end is None else end - kill.at, op_id))
            timelines[op_id] = _timeline(op_id, kill, state) + _blocked(op_id, kill, state, kinds)
            starts = [
                s for s, pid, _ in state.runs.get(op_id, []) if s > kill.at and pid != kill.pid
            ]
            reruns.append(min(starts) - kill.at if starts else math.inf)
    quick = [s for s, op in ends if kinds.get(op) in KINDS and KINDS[kinds[op]].quick]
    return {
        "quick": _spread(quick),
        "all": _spread([s for s, _ in ends]),
        "rerun": _spread(reruns),
        "finished_before_kill": before,
        "slowest": [
            {"op": op, "kind": kinds.get(op, "?"), "s": _finite(value), "runs": timelines[op]}
            for value, op in sorted(ends, reverse=True)[:SHOWN_IDS]
        ],
    }


def _timeline(op_id: str, kill: Kill, state: State) -> str:
    """The item's runs around one kill, in seconds from the SIGKILL: "start-end@pid" each
    ("?" = no end recorded; "*" marks the killed worker), so a slow recovery explains itself."""
    parts = []
    for start, pid, end in sorted(state.runs.get(op_id, [])):
        mark = "*" if pid == kill.pid else ""
        finish = "?" if end is None else f"{end - kill.at:+.2f}"
        parts.append(f"{start - kill.at:+.2f}..{finish}@{pid}{mark}")
    return " ".join(parts)


def _blocked(op_id: str, kill: Kill, state: State, kinds: dict[str, str]) -> str:
    """Seconds the event loop of the item's first worker after the kill spent in block_loop
    jobs between the kill and the item's end (an async run cannot finish, nor its ack be
    written, while its worker's loop is blocked)."""
    later = sorted((s, pid, e) for s, pid, e in state.runs.get(op_id, []) if s > kill.at)
    end = _first_end_after(op_id, kill.at, state)
    if not later or end is None:
        return ""
    pid = later[0][1]
    blocked = 0.0
    for other, runs in state.runs.items():
        if kinds.get(other) != "block_loop":
            continue
        for start, run_pid, run_end in runs:
            if run_pid == pid and run_end is not None:
                blocked += max(0.0, min(run_end, end) - max(start, kill.at))
    return f" (its loop blocked {blocked:.2f} s)" if blocked else ""


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "samples": len(values),
        "p50_s": _finite(percentile(values, 50)),
        "p95_s": _finite(percentile(values, 95)),
        "max_s": _finite(max(values) if values else None),
        "never": sum(math.isinf(v) for v in values),
    }


def _finite(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "never" if math.isinf(value) else round(value, 3)


def score(
    *,
    settings: dict[str, Any],
    jobs: list[Job],
    produced: Produced,
    state: State,
    kills: list[Kill],
    crashes: list[dict[str, Any]],
    faults: dict[str, int],
    drained: bool,
    settle_s: float,
    logs: dict[str, Any],
) -> dict[str, Any]:
    """Every job's fate, the targets, and whether they hold."""
    expected, enqueue = _expected(jobs, produced, state)
    tally: Counter[str] = Counter()
    problems: dict[str, list[str]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    runs_max = 0
    for op_id, job in expected.items():
        kind = KINDS[job.kind]
        successes = len(state.success.get(op_id, []))
        completed = successes > 0 or state.records.get(op_id, {}).get("status") == "completed"
        failed = op_id in state.failures
        errored = op_id in state.system_errors
        runs = state.runs.get(op_id, [])
        runs_max = max(runs_max, len(runs))
        tally["run_more_than_once"] += len(runs) > 1
        overlap = _overlap(runs, kind.timeout_s)
        if overlap == "concurrent":
            problems["ran_concurrently"].append(op_id)
        elif overlap == "after_timeout":
            tally["timed_out_run_overlapped_its_retry"] += 1
        if completed:
            tally["completed"] += 1
            if successes == 0:
                problems["completed_without_on_success"].append(op_id)
                tally["callback_lost_to_a_kill"] += _killed_after_ack(op_id, state, kills)
            if kind.expect != "completed":
                problems["completed_unexpectedly"].append(op_id)
        if failed:
            tally["failed"] += 1
            tally["failed_as_expected" if kind.expect == "failed" else "failed_unexpectedly"] += 1
            if kind.expect != "failed":
                problems["failed_unexpectedly"].append(op_id)
        if errored:
            tally["system_errors"] += 1
            reasons.update(str(r.get("reason")) for r in state.system_errors[op_id][:1])
            problems["system_errors"].append(op_id)
        if successes > 1:
            problems["duplicate_completions"].append(op_id)
        if completed + failed + errored > 1 or len(state.failures.get(op_id, [])) > 1:
            problems["more_than_one_end"].append(op_id)
        if not (completed or failed or errored):
            if state.waiting[op_id] or state.delayed[op_id] or state.in_flight[op_id]:
                where = (
                    "still_in_flight"
                    if state.in_flight[op_id]
                    else "still_delayed"
                    if state.delayed[op_id]
                    else "still_waiting"
                )
                tally[where] += 1
                problems[where].append(op_id)
            else:
                problems["lost"].append(op_id)
    recovery = _recovery(kills, state, {job.op_id: job.kind for job in jobs})
    lease = float(settings["lease_timeout_s"])
    p95 = recovery["quick"]["p95_s"]
    targets = {
        "lost": _target(len(problems["lost"]), "== 0", len(problems["lost"]) == 0),
        "duplicate_completions": _target(
            len(problems["duplicate_completions"]),
            "== 0",
            not problems["duplicate_completions"],
        ),
        "recovery_p95_s": _target(
            p95,
            f"<= {lease + 1:g}",
            None if p95 is None else (p95 != "never" and float(p95) <= lease + 1),
        ),
    }
    counts = {
        "enqueued": len(expected),
        "completed": tally["completed"],
        "completed_without_on_success": len(problems["completed_without_on_success"]),
        "of_which_worker_killed_after_ack": tally["callback_lost_to_a_kill"],
        "completed_unexpectedly": len(problems["completed_unexpectedly"]),
        "failed": tally["failed"],
        "failed_as_expected": tally["failed_as_expected"],
        "failed_unexpectedly": tally["failed_unexpectedly"],
        "system_errors": tally["system_errors"],
        "lost": len(problems["lost"]),
        "duplicate_completions": len(problems["duplicate_completions"]),
        "more_than_one_end": len(problems["more_than_one_end"]),
        "still_waiting": tally["still_waiting"],
        "still_delayed": tally["still_delayed"],
        "still_in_flight": tally["still_in_flight"],
        "runs_per_job_max": runs_max,
        "jobs_run_more_than_once": tally["run_more_than_once"],
        "jobs_run_concurrently": len(problems["ran_concurrently"]),
        "timed_out_run_overlapped_its_retry": tally["timed_out_run_overlapped_its_retry"],
    }
    return {
        "settings": settings,
        **counts,
        "system_error_reasons": dict(reasons),
        "enqueue": enqueue,
        "recovery": recovery,
        "worker_kills": len(kills),
        "kills": [{"at": k.at, "pid": k.pid, "held": len(k.held)} for k in kills],
        "items_held_at_kills": sum(len(k.held) for k in kills),
        "worker_exits_unprompted": crashes,
        "faults": faults,
        "drained": drained,
        "settle_s": round(settle_s, 1),
        "worker_logs": logs,
        "details": {
            name: [_detail(op_id, expected, state) for op_id in sorted(problems[name])[:3]]
            for name in (
                "lost",
                "duplicate_completions",
                "ran_concurrently",
                "more_than_one_end",
                "completed_without_on_success",
            )
            if problems[name]
        },
        "examples": {
            name: sorted(ids)[:SHOWN_IDS] for name, ids in sorted(problems.items()) if ids
        },
        "targets": targets,
        "passed": all(t["pass"] is not False for t in targets.values()),
    }


def _killed_after_ack(op_id: str, state: State, kills: list[Kill]) -> bool:
    """True if the worker that ran ``op_id`` was SIGKILLed after its ack: the callback runs
    after the ack, in that worker, so the kill explains a missing ``on_success``."""
    record = state.records.get(op_id, {})
    parts = record.get("worker", "").split(":")
    finished = record.get("finished_at")
    if len(parts) < 2 or not parts[1].isdigit() or not finished:
        return False
    return any(k.pid == int(parts[1]) and k.at >= float(finished) for k in kills)


def _detail(op_id: str, expected: dict[str, Job], state: State) -> dict[str, Any]:
    """What the server holds about one operation (for the JSON scoreboard)."""
    job = expected.get(op_id)
    return {
        "op": op_id,
        "kind": job.kind if job else None,
        "runs": [{"start": s, "pid": pid, "end": e} for s, pid, e in state.runs.get(op_id, [])],
        "on_success_at": state.success.get(op_id, []),
        "on_failure_at": state.failure_calls.get(op_id, []),
        "status_record": state.records.get(op_id),
        "copies": {
            "waiting": state.waiting[op_id],
            "delayed": state.delayed[op_id],
            "in_flight": state.in_flight[op_id],
            "failures": len(state.failures.get(op_id, [])),
            "system_errors": len(state.system_errors.get(op_id, [])),
        },
    }


def _spread_line(name: str, spread: dict[str, Any]) -> str:
    p50, p95, top = (_seconds(spread[k]) for k in ("p50_s", "p95_s", "max_s"))
    counts = f"n={spread['samples']}, never {spread['never']}"
    return f"  {name:<28} p50 {p50}, p95 {p95}, max {top} ({counts})"


def _seconds(value: float | str | None) -> str:
    return f"{value} s" if isinstance(value, (int, float)) else str(value or "-")


def _target(value: Any, goal: str, passed: bool | None) -> dict[str, Any]:
    return {"value": value, "target": goal, "pass": passed}


def render(board: dict[str, Any]) -> str:
    """The scoreboard as text: the targets first, then the detail."""
    s = board["settings"]
    lines = [
        f"chaos soak: {s['jobs']} jobs ({s['enqueues_planned']} enqueues), {s['workers']} "
        f"workers x {s['concurrency']}, {s['duration_s']:g} s of faults, lease "
        f"{s['lease_timeout_s']:g} s, seed {s['seed']}, {s['server']}",
        "",
        f"{'target':<28}{'value':>10}  {'goal':<8}result",
    ]
    for name, t in board["targets"].items():
        result = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        value = "-" if t["value"] is None else t["value"]
        lines.append(f"{name.upper():<28}{value!s:>10}  {t['target']:<8}{result}")
    lines += ["", "outcomes"]
    for name in OUTCOME_LINES:
        lines.append(f"  {name:<32}{board[name]:>8}")
    if board["system_error_reasons"]:
        lines.append(f"  system error reasons: {board['system_error_reasons']}")
    rec = board["recovery"]
    lines += [
        "",
        f"recovery after {board['worker_kills']} worker kills ({board['items_held_at_kills']} "
        "items held), from the SIGKILL:",
        _spread_line("to the end, quick jobs", rec["quick"]),
        _spread_line("to the end, every kind", rec["all"]),
        _spread_line("to the first run elsewhere", rec["rerun"]),
        "  slowest (runs in s from the kill, start..end@pid, * = the killed worker):",
        *(f"    {r['op']} ({r['kind']}) {r['s']} s: {r['runs']}" for r in rec["slowest"][:5]),
        f"enqueue: {board['enqueue']}",
        f"faults: {board['faults']}; workers that exited unprompted: "
        f"{len(board['worker_exits_unprompted'])}",
        f"drained within the settle time: {'yes' if board['drained'] else 'NO'} "
        f"({board['settle_s']} s)",
        f"worker log records: {board['worker_logs']['levels']}",
    ]
    for level, top in board["worker_logs"]["top"].items():
        for message, count in top:
            lines.append(f"  {level} x{count}: {message}")
    for name, ids in board["examples"].items():
        lines.append(f"e.g. {name}: {', '.join(ids)}")
    if s.get("logs"):
        lines.append(f"worker logs kept in {s['logs']}")
    lines.append(
        f"\n{'PASS' if board['passed'] else 'FAIL'}: targets "
        f"{'hold' if board['passed'] else 'do not hold'}"
    )
    return "\n".join(lines)
