"""The README's "Periodic jobs (cron)" example runs as written."""

from __future__ import annotations

from pathlib import Path

from tests.support.readme import run_readme_block


def test_readme_periodic_jobs(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Periodic jobs (cron)", examples_url, tmp_path)
    assert stdout.count("for billing") >= 3  # one more may finish while the worker stops
