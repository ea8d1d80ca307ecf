"""The README's command table lists every ``queue-system`` command and each worker option."""

from __future__ import annotations

import re
from pathlib import Path

from queue_system.cli.main import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def command_table() -> str:
    operations = README[README.index("## Operations") :]
    start = operations.index("| Command | What it does |")
    return operations[start : operations.index("\n\n", start)]


def test_every_command_is_in_the_readme_table() -> None:
    table = command_table()
    listed = set(re.findall(r"^\| `([a-z]+)", table, flags=re.M))
    listed |= set(re.findall(r"`([a-z]+) [A-Z]+[^`]*`", table))  # "pause QUEUE`, `resume QUEUE"
    assert sorted(set(cli.commands) - listed) == []


def test_every_worker_option_is_in_the_readme_table() -> None:
    [row] = [line for line in command_table().splitlines() if line.startswith("| `worker APP")]
    params = [p for p in cli.commands["worker"].params if not getattr(p, "hidden", False)]
    options = {o for p in params for o in p.opts if o.startswith("--")}
    assert sorted(o for o in options - {"--help"} if o not in row) == []
