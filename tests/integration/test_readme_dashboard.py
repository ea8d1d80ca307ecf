"""The README's Dashboard and Prometheus examples run as written."""

from __future__ import annotations

from pathlib import Path

from tests.support.readme import run_readme_block


def test_readme_mounts_the_dashboard(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Dashboard", examples_url, tmp_path)
    assert "dashboard mounted; read-only: True" in stdout


def test_readme_exposes_prometheus_metrics(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Prometheus", examples_url, tmp_path)
    assert 'queue_system_waiting{priority="normal",queue="emails"} 1.0' in stdout
    assert "queue_system_enqueued_total 1.0" in stdout
