"""An application with its own top-level ``utils`` module can use queue_system."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    import asyncio, sys
    import utils  # the application's own module, not ours
    from queue_system import QueueConfig, QueueManager, QueueWorker

    assert utils.OWN is True
    config = QueueConfig(redis_url=sys.argv[1], queue_prefix=sys.argv[2])

    @config.register_callback
    def shout(entity):
        return utils.shout(entity["text"])

    op = QueueManager(config).enqueue({"text": "hello"}, shout)
    asyncio.run(QueueWorker(config, burst=True).run())
    print(QueueManager(config).get_operation(op["operation_id"])["result"])
    """
)


def test_an_app_with_its_own_utils_module_runs_jobs(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    (tmp_path / "utils.py").write_text("OWN = True\n\ndef shout(text):\n    return text.upper()\n")
    (tmp_path / "app.py").write_text(APP)
    done = subprocess.run(
        [sys.executable, "app.py", redis_url, key_prefix],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HELLO"


@pytest.mark.slow
def test_the_demo_runs_from_an_app_folder_with_its_own_utils(
    tmp_path: Path, redis_url: str
) -> None:
    # `python -m` puts the current folder first on sys.path: the app's utils.py shadows ours.
    (tmp_path / "utils.py").write_text("raise ImportError('the application utils, not ours')\n")
    done = subprocess.run(
        [sys.executable, "-m", "queue_system", "demo"],
        cwd=tmp_path,
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Enqueued 300 jobs" in done.stdout
