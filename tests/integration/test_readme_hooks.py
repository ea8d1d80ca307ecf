"""The README's hooks and error-classes examples run as written (against the suite's server)."""

from __future__ import annotations

from pathlib import Path

from tests.support.readme import run_readme_block


def test_readme_sentry_recipe(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Hooks and middleware", examples_url, tmp_path, index=0)
    assert stdout.strip() == "captured: ValueError True"


def test_readme_request_id_middleware(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Hooks and middleware", examples_url, tmp_path, index=1)
    assert stdout.strip() == "running send_receipt for request req-42"


def test_readme_error_classes(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("Error classes", examples_url, tmp_path)
    assert stdout.splitlines() == [
        "forbidden ['give_up_on:PermissionError']",
        "invalid ['non_retryable']",
        "throttled ['retry_after', 'retry_on:ConnectionError', 'max_attempts']",
    ]
