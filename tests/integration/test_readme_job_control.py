"""The README's Job control examples run as written, against the suite's server."""

from __future__ import annotations

from pathlib import Path

from tests.support.readme import run_readme_block


def test_readme_enqueue_then_wait(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Job control", examples_url, tmp_path, index=0)
    assert stdout.splitlines() == [
        "{'resized': 'cat.png', 'attempt': 1}",
        "{'step': 3, 'of': 3}",
    ]


def test_readme_cancel(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Job control", examples_url, tmp_path, index=1)
    first, *rest = stdout.splitlines()
    assert first == "cancelling"
    # the callback runs in the background: its line may come anywhere after the first
    assert sorted(rest) == ["already_finished", "on_failure: cancelled", "status: cancelled"]


def test_readme_dependencies(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Dependencies", examples_url, tmp_path)
    assert stdout.splitlines() == [
        "waiting_for_dependencies",
        "['a', 'b'] ['merge'] completed",
        "failed dependency_failed True",
    ]
