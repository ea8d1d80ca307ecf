"""bench/processes.py keeps working (no figure is asserted: it is never a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_processes_benchmark_runs_and_reports_each_side(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "bench/processes.py", "--quick", "--json", "--url", redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"1 process", "2 processes", "1 worker, executor=process x2"} <= set(report["sides"])
    assert report["speedup_span"] > 0 and report["result"] in ("PASS", "FAIL")
