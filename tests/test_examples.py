"""Every file in examples/ runs against the suite's own server and prints what it should.

Each example runs as a subprocess (as a user would run it) with ``REDIS_URL`` pointing at
database 1 of the suite's server, flushed before each run: the examples use the default
``queue:`` prefix, and database 0 belongs to the other tests. The FastAPI app runs in-process
under ``TestClient``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import redis

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT_S = 60
IN_PROCESS = {"fastapi_app.py"}  # needs an ASGI client, see test_fastapi_app

# Lines (or fragments of lines) each example must print, on stdout.
EXPECTED: dict[str, list[str]] = {
    "basic_usage.py": [
        "Enqueued operation ",
        "Worker running: True",
        "Successfully processed: {'status': 'success', 'result': "
        "{'user_id': '123', 'action': 'update'}}",
        "Worker running: False",
        "'queue:high:process_data': 0",
    ],
    "retry_configs.py": [
        "default              max_attempts=5 delays=[1, 2, 4, 8, 16] timeout=None",
        "fixed                max_attempts=3 delays=[30] timeout=300",
        "exponential          max_attempts=5 delays=[1, 2, 4, 8, 16] timeout=3600",
        "custom               max_attempts=4 delays=[60, 300, 1800, 7200] timeout=86400",
        "fixed: succeeded after 3 runs (ok on run 3)",
        "exponential: succeeded after 4 runs (ok on run 4)",
        "custom: gave up after 3 runs: custom: run 3 failed",
        "timeout: gave up after 2 runs: timeout: run 2 failed",
        "failures queue holds 2 items",
    ],
    "callbacks.py": [
        " succeeded",
        "failed: card declined for user 456",
        "runs: 3, history: ['RuntimeError', 'RuntimeError', 'RuntimeError']",
        "audit: __main__:process_data -> {'status': 'success', 'result': {'user_id': '789'}}",
    ],
    "monitoring.py": [
        "'queue:high:process_data': 5",
        "'queue:normal:send_email': 10",
        "'queue:failures': 1",
        "Success rate: 93.3%",
        "Processed: 15/15 (Failed: 1)",
        "Average processing time: ",
        '"message": "Queue metric update", "metric_name": "success_rate"',
    ],
    "batch_enqueue.py": [
        "Enqueued 3 items",
        "Enqueued 1000 items in ",
        "Dedup batch statuses: ['queued', 'duplicate', 'queued']",
        "Worker processed 1005 items; high priority first: [1, 2, 3]",
    ],
    "error_handling.py": [
        "unknown priority: ValueError: priority 'urgent' is invalid",
        "lambda processor: TypeError: ",
        "unserializable entity: SerializationError: ",
        "hostile queue name: ValueError: queue_name 'a:b' is invalid",
        "Redis down: QueueUnavailableError: ",
        "Failed operations: 1",
        "System errors: 1",
        "queue:failures: reason=failed processor=__main__:import_orders runs=3 ConnectionError",
        "queue:system_errors: reason=unknown_processor processor=legacy.jobs:import_orders",
        "original entity: {'supplier': 'globex'}",
    ],
    "resilience.py": [
        "retry_with_backoff: payload after 3 calls",
        "circuit_breaker: rejected at once:",
        "circuit_breaker: after recovery: pong",
        "with_timeout (async):",
        "with_timeout (sync):",
        "try_catch: ServiceError:",
    ],
}

# The demo ships in the package (queue_system/cli/demo.py) and runs as `queue-system demo`.
DEMO_EXPECTED = [
    "Using $REDIS_URL: QueueConfig(",
    "Enqueued 300 jobs under prefix 'demo-",
    "Running one worker (max_workers=20, burst mode)",
    "system error:  [unknown_processor] 'legacy.tasks:rebuild_index' is not registered",
    "one failure:   queue_system.cli.demo:sync_crm after 3 runs",
    '"message":"Queue metric update","metric_name":"success_rate"',
    "OK: every job ended in exactly one place; nothing was lost.",
    "Deleted the demo's ",
]


def example_files() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in IN_PROCESS)


def run_example(name: str, redis_url: str | None) -> str:
    """Run ``examples/<name>`` like a user would; return its stdout (fails on exit != 0)."""
    return run_command([sys.executable, str(EXAMPLES / name)], redis_url, name, ROOT)


def run_demo(redis_url: str | None, cwd: Path) -> str:
    """Run ``queue-system demo`` (from ``cwd``) like a user would; return its stdout."""
    return run_command([sys.executable, "-m", "queue_system", "demo"], redis_url, "demo", cwd)


def run_command(argv: list[str], redis_url: str | None, name: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_prints(name: str, stdout: str) -> None:
    missing = [line for line in EXPECTED[name] if line not in stdout]
    assert not missing, f"{name} did not print {missing}\n--- stdout:\n{stdout}"


def test_every_example_has_expected_output() -> None:
    assert set(EXPECTED) == set(example_files())


@pytest.mark.parametrize("name", example_files())
def test_example_runs(name: str, examples_url: str) -> None:
    assert_prints(name, run_example(name, examples_url))


def demo_counts(stdout: str) -> dict[str, int]:
    counts = {
        place: int(m.group(1))
        for place in ("succeeded", "failures", "system_errors", "total")
        if (m := re.search(rf"^  {place}\s+(\d+)", stdout, re.MULTILINE))
    }
    enqueued = re.search(r"\(enqueued: (\d+)\)", stdout)
    assert enqueued, stdout
    counts["enqueued"] = int(enqueued.group(1))
    return counts


def test_demo_ends_deterministically_and_cleans_up(examples_url: str, tmp_path: Path) -> None:
    stdout = run_demo(examples_url, cwd=tmp_path)  # not the checkout: as after `pip install`

    missing = [line for line in DEMO_EXPECTED if line not in stdout]
    assert not missing, f"the demo did not print {missing}\n--- stdout:\n{stdout}"
    assert demo_counts(stdout) == {
        "succeeded": 289,
        "failures": 10,
        "system_errors": 1,
        "total": 300,
        "enqueued": 300,
    }
    assert "(on_success callbacks: 289)" in stdout
    assert "(on_failure callbacks: 10)" in stdout
    assert re.search(r"^\[ *\d+\.\d+s\] done +\d+ \| failed", stdout, re.MULTILINE), stdout
    client = redis.Redis.from_url(examples_url)
    try:
        assert client.dbsize() == 0  # it used a server it did not start: its keys are gone
    finally:
        client.close()


def test_demo_without_redis_url_starts_its_own_server(tmp_path: Path) -> None:
    stdout = run_demo(redis_url=None, cwd=tmp_path)

    assert re.search(
        r"No REDIS_URL set: started a throwaway server at redis://127\.0\.0\.1:\d+/0", stdout
    )
    assert demo_counts(stdout)["total"] == 300
    assert "OK: every job ended in exactly one place" in stdout
    assert "Deleted the demo's" not in stdout


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(name).stem, EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Starlette >= 1.0 asks for the httpx2 package in its TestClient; httpx still works. Starlette
# < 1.8 (under fastapi's floor) names anyio.abc.BlockingPortal, which a newer anyio deprecates.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
@pytest.mark.filterwarnings("ignore:The anyio.abc.BlockingPortal alias is deprecated")
def test_fastapi_app(examples_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    monkeypatch.setenv("REDIS_URL", examples_url)
    app_module = load_example("fastapi_app.py")
    try:
        # Entering the client runs the app's startup: the worker starts inside the app.
        with TestClient(app_module.app) as client:
            single = client.post("/process", json={"id": 1})
            batch = client.post("/process-batch", json=[{"id": 2}, {"id": 3}])
            awaited = client.post("/process-async", json={"id": 4})

            assert single.status_code == 200 and single.json()["status"] == "queued"
            assert batch.json() == {"operation_count": 2, "status": "queued"}
            assert awaited.status_code == 200 and awaited.json()["status"] == "queued"
            wait_until(lambda: len(app_module.processed) == 4, message="worker ran all 4")
            status = client.get("/status").json()
            assert status["worker_running"] is True
            assert status["queues"]["queue:normal:process_data"] == 0
            assert status["queues"]["queue:failures"] == 0
        assert not app_module.worker.running  # shutdown stopped it
        assert sorted(item["id"] for item in app_module.processed) == [1, 2, 3, 4]
    finally:
        app_module.config.redis_client.close()


# Starlette >= 1.0 asks for the httpx2 package in its TestClient; httpx still works.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_fastapi_app_runs_the_backlog_left_before_a_restart(
    examples_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from queue_system import QueueConfig, QueueManager

    # Given items the app enqueued before it restarted (by the name it registers process_data as)
    before = QueueConfig(redis_url=examples_url)
    QueueManager(before).enqueue_batch([{"id": 10}, {"id": 11}], "process_data")
    monkeypatch.setenv("REDIS_URL", examples_url)
    app_module = load_example("fastapi_app.py")
    try:
        # When the app starts again, its worker runs them before any request reaches the app
        with TestClient(app_module.app):
            wait_until(lambda: len(app_module.processed) == 2, message="backlog ran")
        assert sorted(item["id"] for item in app_module.processed) == [10, 11]
        assert before.redis_client.llen(before.keys.system_errors) == 0
    finally:
        app_module.config.redis_client.close()
        before.redis_client.close()
