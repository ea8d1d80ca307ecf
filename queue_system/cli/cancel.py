"""The ``queue-system cancel ID...`` command: cancel operations by id.

One :meth:`QueueManager.cancel` call per id; one line per id: ``<id> <answer>`` (``cancelled``,
``cancelling``, ``already_finished`` or ``not_found``). Exit status 1 when any id was not
found, else 0 (a finished operation is not an error: there is nothing left to cancel).
"""

from __future__ import annotations

import sys

import click

from queue_system.cli.render import print_json
from queue_system.cli.state import current_state
from queue_system.producer.sync import QueueManager


@click.command()
@click.argument("operation_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print {id: answer} as JSON.")
def cancel(operation_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel operations: waiting or scheduled ones never run; running ones are stopped by
    their worker and end cancelled (exit 1 if any id is unknown)."""
    manager = QueueManager(current_state().config)
    answers = {op_id: manager.cancel(op_id) for op_id in operation_ids}
    if as_json:
        print_json(answers)
    else:
        for op_id, answer in answers.items():
            click.echo(f"{op_id} {answer}")
    if "not_found" in answers.values():
        sys.exit(1)
