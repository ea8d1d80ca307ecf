"""The benchmark keeps working (it is never a timed test: no figure is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_runs_and_reports_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "bench/bench.py", "--quick", "--json", "--no-metrics-cost"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout[done.stdout.index("{") :])
    text = json.dumps(report)
    for figure in ("enqueue one by one", "enqueue_batch", "drain", "latency p50", "latency p99"):
        assert figure in text, figure
