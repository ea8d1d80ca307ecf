"""``queue-system demo`` ships inside the package and fails in one line without a server."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from queue_system.engine.embedded_server import free_loopback_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_is_part_of_the_package() -> None:
    spec = importlib.util.find_spec("queue_system.cli.demo")
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).parent == ROOT / "queue_system" / "cli"


def dead_url_env() -> dict[str, str]:
    url = f"redis://admin:s3cret@127.0.0.1:{free_loopback_port()}/0"
    return {**os.environ, "REDIS_URL": url}


@pytest.mark.slow
def test_demo_with_an_unreachable_redis_url_prints_one_line(tmp_path: Path) -> None:
    # From a folder that is not the source checkout, as after `pip install`
    out = subprocess.run(
        [sys.executable, "-m", "queue_system", "demo"],
        cwd=tmp_path,
        env=dead_url_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) == 1, lines
    assert "cannot reach Redis at redis://admin:***@127.0.0.1:" in lines[0]
    assert "s3cret" not in lines[0]


@pytest.mark.slow
def test_scripts_demo_with_an_unreachable_redis_url_prints_one_line() -> None:
    # The suite's own venv was installed with [dev] (scripts/test or scripts/test-lowest),
    # which scripts/demo accepts as it is: the test installs nothing.
    venv = Path(sys.prefix)
    env = {**dead_url_env(), "QUEUE_SYSTEM_VENV": str(venv)}
    out = subprocess.run(
        [str(ROOT / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], lines
