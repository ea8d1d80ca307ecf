"""README examples as tests: find a section's ``python`` code blocks and run one as a user would.

A README example that should run is written against ``QueueConfig()`` (which reads
``$REDIS_URL``), never against a fixed address, so that the test can point it at the suite's
own server::

    def test_readme_delayed_jobs(examples_url: str, tmp_path: Path) -> None:
        stdout = run_readme_block("Delayed jobs", examples_url, tmp_path)
        assert "ran after 2 s" in stdout
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_TIMEOUT_S = 60
_HEADING = re.compile(r"^(#{2,4}) (.+?)\s*$")
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def readme_section(heading: str) -> str:
    """The text of the README section titled ``heading`` (up to the next heading of its level)."""
    lines = README.read_text(encoding="utf-8").splitlines(keepends=True)
    for start, line in enumerate(lines):
        found = _HEADING.match(line)
        if found and found.group(2) == heading:
            level = len(found.group(1))
            body: list[str] = []
            for following in lines[start + 1 :]:
                nested = _HEADING.match(following)
                if nested and len(nested.group(1)) <= level:
                    break
                body.append(following)
            return "".join(body)
    raise LookupError(f"README has no section titled {heading!r}")


def readme_python_blocks(heading: str) -> list[str]:
    """Every ```python block of the README section titled ``heading``, in order."""
    blocks = _BLOCK.findall(readme_section(heading))
    if not blocks:
        raise LookupError(f"README section {heading!r} has no python block")
    return blocks


def run_readme_block(heading: str, redis_url: str, tmp_path: Path, index: int = 0) -> str:
    """Run block ``index`` of section ``heading`` as a script with ``REDIS_URL``; its stdout.

    Fails (AssertionError with both streams) when the script exits non-zero.
    """
    script = tmp_path / "readme_example.py"
    script.write_text(readme_python_blocks(heading)[index], encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"README {heading!r} block {index} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout
