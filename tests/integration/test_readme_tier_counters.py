"""The README's per-tier counters example (Prometheus section, second block) runs as written."""

from __future__ import annotations

from pathlib import Path

from tests.support.readme import run_readme_block


def test_readme_reads_outcomes_per_tier(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Prometheus", examples_url, tmp_path, index=1)
    assert "succeeded 1 failed 1" in stdout
