"""The global options every ``queue-system`` command shares, and the config built from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from queue_system.config import QueueConfig
from queue_system.engine.connection import redact_url


@dataclass(kw_only=True)
class State:
    """Global options, and the QueueConfig built from them on first use."""

    url: str
    prefix: str
    timeout: float
    debug: bool
    _config: QueueConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> QueueConfig:
        if self._config is None:
            self._config = QueueConfig(
                redis_url=self.url, queue_prefix=self.prefix, connection_timeout=self.timeout
            )
        return self._config

    def close(self) -> None:
        if self._config is not None:
            self._config.redis_client.close()


def current_state() -> State:
    """The :class:`State` of the command being run."""
    state = click.get_current_context().find_object(State)
    assert state is not None, "commands run under the cli group"
    return state


def where() -> str:
    """The server (password hidden) and prefix the command acts on."""
    state = current_state()
    return f"{redact_url(state.url)} prefix {state.prefix}"


def given_on_command_line(name: str) -> bool:
    """True when the global option ``name`` was typed (not taken from the environment)."""
    root = click.get_current_context().find_root()
    return root.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
