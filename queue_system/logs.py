"""JSON log lines for queue_system records, one object per line. Configures nothing on import.

An application (or the CLI, or an example) opts in once::

    from queue_system.logs import setup_json_logging

    setup_json_logging("INFO")

and every record, metric updates included, becomes a line such as::

    {"timestamp": "2024-05-06T07:08:09.123000+00:00", "level": "INFO",
     "logger": "queue_system.metrics", "message": "Queue metric update",
     "metric_name": "processed", "metric_value": 10.0, ...}

Fields: ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then every
``extra`` field of the record, flat.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

#: Name given to the handler setup_json_logging installs, so a second call finds it.
HANDLER_NAME = "queue_system.json"

#: The line formats :func:`setup_logging` writes.
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# LogRecord attribute -> field name in the JSON line.
_RENAMED = {"levelname": "level", "name": "logger"}


def json_formatter(*, static_fields: Mapping[str, Any] | None = None) -> JsonFormatter:
    """A formatter writing each record as one flat JSON object.

    Args:
        static_fields: fields added to every line, e.g. ``{"service": "billing"}``.

    Returns:
        A ``pythonjsonlogger.json.JsonFormatter`` emitting ``timestamp`` (ISO 8601 UTC),
        ``level``, ``logger``, ``message`` and the record's extra fields.
    """
    return JsonFormatter(
        # A %-style string, not a list of names: lists are accepted from python-json-logger
        # 4.0 on only. The formatter writes the UTC timestamp last, into the slot that naming
        # it first here reserves, so it stays at the front of the line, where people look.
        "%(timestamp)s %(levelname)s %(name)s %(message)s",
        rename_fields=dict(_RENAMED),
        static_fields=dict(static_fields or {}),
        timestamp=True,
    )


def setup_json_logging(
    level: int | str = "INFO",
    stream: IO[str] | None = None,
    logger_name: str | None = None,
) -> logging.Handler:
    """Send the records of ``logger_name`` (default: root) to ``stream`` as JSON lines.

    Idempotent: a second call on the same logger adds no handler; it applies ``level`` and,
    when given, ``stream`` to the handler already there and returns it.

    Args:
        level: the logger's level, as a number or a name (``"INFO"``, ``"debug"``).
        stream: where lines go; default ``sys.stderr``.
        logger_name: the logger to configure; None for the root logger.

    Returns:
        The handler writing the JSON lines.

    Raises:
        ValueError: ``level`` is not a known level name.
    """
    return setup_logging(level, "json", stream, logger_name)


def setup_logging(
    level: int | str = "INFO",
    log_format: str = "json",
    stream: IO[str] | None = None,
    logger_name: str | None = None,
) -> logging.Handler:
    """Send the records of ``logger_name`` (default: root) to ``stream``, one line each.

    Like :func:`setup_json_logging` (idempotent in the same way), with the line format to
    choose: ``"json"`` (see the module docstring) or ``"text"``
    (``2024-05-06 07:08:09,123 INFO shop.orders: shipping order 7``).

    Raises:
        ValueError: ``level`` is not a known level name, or ``log_format`` not one of
            ``LOG_FORMATS``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {LOG_FORMATS}, got {log_format!r}")
    level = level_number(level)
    formatter = json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    for handler in logger.handlers:
        if handler.get_name() == HANDLER_NAME and isinstance(handler, logging.StreamHandler):
            if stream is not None:
                handler.setStream(stream)
            handler.setFormatter(formatter)
            return handler
    new_handler = logging.StreamHandler(stream)
    new_handler.set_name(HANDLER_NAME)
    new_handler.setFormatter(formatter)
    logger.addHandler(new_handler)
    return new_handler


def level_number(level: int | str) -> int:
    """A logging level given as a number or a name (any case) as its number.

    Raises:
        ValueError: an unknown level name.
    """
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"level must be a logging level name or number, got {level!r}")
    return number
