"""The README section "Pause, rate limits and concurrency caps" runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.readme import run_readme_block

SECTION = "Pause, rate limits and concurrency caps"


def test_readme_limits_example(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block(SECTION, examples_url, tmp_path, index=0)
    found = re.search(r"25 sms, at most (\d+) at once, in ([\d.]+) s", stdout)
    assert found, stdout
    assert int(found.group(1)) == 2
    assert float(found.group(2)) >= 2.0  # 25 starts at 10/s span two full windows


def test_readme_pause_and_runtime_limits_example(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block(SECTION, examples_url, tmp_path, index=1)
    assert stdout.splitlines() == [
        "{'reports': ['low'], 'sms': ['high', 'normal', 'low']}",
        "5 100/m runtime",
    ]
