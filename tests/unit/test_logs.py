"""JSON log lines: fields, UTC timestamps, an idempotent setup, nothing configured on import."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from freezegun import freeze_time

from queue_system.logs import HANDLER_NAME, json_formatter, setup_json_logging


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


def test_record_is_one_json_object_per_line(logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_json_logging("INFO", stream, logger.name)
    logger.info("Queue metric update", extra={"metric_name": "processed", "metric_value": 10.0})
    logger.warning("second")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "INFO"
    assert first["logger"] == logger.name
    assert first["message"] == "Queue metric update"
    assert (first["metric_name"], first["metric_value"]) == ("processed", 10.0)
    assert "timestamp" in first
    assert (second["level"], second["message"]) == ("WARNING", "second")


def test_no_raw_record_attributes_leak(logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_json_logging("INFO", stream, logger.name)
    logger.info("hello")
    assert list(json.loads(stream.getvalue())) == ["timestamp", "level", "logger", "message"]


@freeze_time("2024-05-06 07:08:09.250")
def test_timestamp_is_iso8601_utc(logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_json_logging("INFO", stream, logger.name)
    logger.info("hello")
    stamp = json.loads(stream.getvalue())["timestamp"]
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.isoformat().startswith("2024-05-06T07:08:09.25")


def test_level_filters_records(logger: logging.Logger) -> None:
    stream = io.StringIO()
    setup_json_logging("warning", stream, logger.name)
    logger.info("dropped")
    logger.error("kept")
    assert [json.loads(x)["message"] for x in stream.getvalue().splitlines()] == ["kept"]


def test_unknown_level_is_rejected(logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="level"):
        setup_json_logging("LOUD", io.StringIO(), logger.name)
    assert logger.handlers == []


def test_setup_is_idempotent(logger: logging.Logger) -> None:
    first_stream, second_stream = io.StringIO(), io.StringIO()
    first = setup_json_logging("INFO", first_stream, logger.name)
    second = setup_json_logging("DEBUG", second_stream, logger.name)
    assert second is first
    assert logger.handlers == [first]
    assert first.get_name() == HANDLER_NAME
    logger.debug("once")
    assert first_stream.getvalue() == ""
    assert len(second_stream.getvalue().splitlines()) == 1


def test_setup_defaults_to_the_root_logger() -> None:
    root = logging.getLogger()
    level = root.level
    handler = setup_json_logging(stream=io.StringIO())
    try:
        assert handler in root.handlers
        assert root.level == logging.INFO
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_static_fields_are_added() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", None, None)
    line = json.loads(json_formatter(static_fields={"service": "billing"}).format(record))
    assert line["service"] == "billing"


def test_importing_configures_no_handlers() -> None:
    code = (
        "import logging\n"
        "import queue_system, queue_system.logs, queue_system.metrics\n"
        "loggers = [logging.getLogger()] + [\n"
        "    l for l in logging.Logger.manager.loggerDict.values()\n"
        "    if isinstance(l, logging.Logger)]\n"
        "print(sum(len(l.handlers) for l in loggers))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "0"
