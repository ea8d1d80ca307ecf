"""``queue-system demo`` ships inside the package and fails in one line without a server."""

from __future__ import annotations

import importlib.util
import os
import shutil
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
def test_scripts_demo_with_an_unreachable_redis_url_prints_one_line(tmp_path: Path) -> None:
    # scripts/demo installs the project into its venv unless a [dev] stamp newer than
    # pyproject.toml says it is there. The suite's venv may come from another checkout (an
    # older stamp): the script runs from a copy beside an old pyproject.toml, so it never
    # installs into the venv running these tests; PYTHONPATH keeps this checkout's code.
    venv = Path(sys.prefix)
    if not any((venv / f".installed-{kind}").exists() for kind in ("dev", "lowest")):
        pytest.skip("this venv was not made by scripts/test or scripts/test-lowest")
    (tmp_path / "scripts").mkdir()
    for name in ("demo", "_bootstrap.sh"):
        shutil.copy2(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    (tmp_path / "pyproject.toml").touch()
    os.utime(tmp_path / "pyproject.toml", (0, 0))
    env = {**dead_url_env(), "QUEUE_SYSTEM_VENV": str(venv), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [str(tmp_path / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], lines
