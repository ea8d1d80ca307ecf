"""try_catch(context=...): the failure record carries fields taken from the call's arguments;
try_catch(caller_errors=...): the caller's own mistakes are one WARNING line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from queue_system.resilience import try_catch


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR]


def queue_of(name: str, entity: dict, *, priority: str = "normal") -> dict[str, object]:
    return {"queue": name, "priority": priority}


def test_context_fields_join_the_record_and_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @try_catch(context=queue_of)
    def send(name: str, entity: dict, *, priority: str = "normal") -> None:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        send("emails", {"secret": 1}, priority="high")
    [record] = error_records(caplog)
    assert (record.queue, record.priority) == ("emails", "high")  # type: ignore[attr-defined]
    assert record.getMessage().endswith("(queue=emails, priority=high)")
    assert "secret" not in record.getMessage()


def test_context_works_on_coroutines(caplog: pytest.LogCaptureFixture) -> None:
    @try_catch(context=queue_of)
    async def send(name: str, entity: dict, *, priority: str = "normal") -> None:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        asyncio.run(send("emails", {}))
    [record] = error_records(caplog)
    assert record.queue == "emails"  # type: ignore[attr-defined]


def test_context_is_not_called_on_success() -> None:
    calls: list[object] = []

    @try_catch(context=lambda *a, **k: calls.append(a) or {})
    def ok() -> int:
        return 1

    assert ok() == 1
    assert calls == []


def test_a_broken_context_never_hides_the_exception(caplog: pytest.LogCaptureFixture) -> None:
    error = RuntimeError("down")

    def broken(*args: object) -> dict[str, object]:
        raise KeyError("oops")

    @try_catch(context=broken)
    def send() -> None:
        raise error

    with pytest.raises(RuntimeError) as raised:
        send()
    assert raised.value is error
    [record] = error_records(caplog)
    assert record.exc_info is not None and record.exc_info[1] is error


def test_context_names_that_logging_reserves_are_prefixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @try_catch(context=lambda: {"message": "m", "name": "n", "queue": "q"})
    def send() -> None:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        send()
    [record] = error_records(caplog)
    assert record.name == __name__
    assert record.context_message == "m"  # type: ignore[attr-defined]
    assert record.context_name == "n"  # type: ignore[attr-defined]
    assert record.queue == "q"  # type: ignore[attr-defined]


@pytest.mark.parametrize("error", [ValueError("bad priority"), TypeError("not a dict")])
def test_caller_errors_are_one_warning_line_without_traceback(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    @try_catch(caller_errors=(ValueError, TypeError), context=lambda: {"queue": "q"})
    def send() -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        send()
    assert raised.value is error
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert (
        record.getMessage()
        == f"{send.__qualname__} raised {type(error).__name__}: {error} (queue=q)"
    )


def test_other_errors_stay_errors_with_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    @try_catch(caller_errors=(ValueError,))
    def send() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        send()
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
