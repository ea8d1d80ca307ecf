"""click's ``CliRunner`` with stdout and stderr apart on every click the package accepts."""

from __future__ import annotations

import inspect

from click.testing import CliRunner


def cli_runner() -> CliRunner:
    """A runner whose results have their own ``stdout`` and ``stderr``.

    click 8.2 always keeps them apart (and dropped ``mix_stderr``); 8.1, the declared floor,
    mixes them unless told not to, and ``Result.stderr`` then raises.
    """
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # click < 8.2
    return CliRunner()
