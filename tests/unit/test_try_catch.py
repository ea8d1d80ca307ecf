"""try_catch: logs with context, then re-raises (unchanged or wrapped); never swallows."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from utils import try_catch


class LibraryError(Exception):
    """Stands in for the library's error root."""


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR]


def test_bare_logs_with_context_and_reraises_the_same_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = KeyError("missing")

    @try_catch
    def lookup() -> None:
        raise error

    with pytest.raises(KeyError) as raised:
        lookup()

    assert raised.value is error
    [record] = error_records(caplog)
    assert record.name == __name__
    assert record.function == lookup.__qualname__  # type: ignore[attr-defined]
    assert record.exception_type == "KeyError"  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[1] is error
    assert "lookup" in record.getMessage() and "KeyError" in record.getMessage()


def test_reraise_as_wraps_other_errors_from_the_original(caplog: pytest.LogCaptureFixture) -> None:
    error = ConnectionError("refused")

    @try_catch(reraise_as=LibraryError)
    def connect() -> None:
        raise error

    with pytest.raises(LibraryError) as raised:
        connect()

    assert str(raised.value) == f"{connect.__qualname__}: refused"
    assert raised.value.__cause__ is error
    assert len(error_records(caplog)) == 1


@pytest.mark.parametrize("error", [ValueError("bad input"), TypeError("bad type")])
def test_passthrough_errors_are_logged_and_not_wrapped(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    @try_catch(reraise_as=LibraryError)
    def validate() -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        validate()
    assert raised.value is error
    assert len(error_records(caplog)) == 1


def test_custom_passthrough_and_existing_library_errors_stay_unchanged() -> None:
    own = LibraryError("already ours")

    @try_catch(reraise_as=LibraryError, passthrough=(KeyError,))
    def fails(error: Exception) -> None:
        raise error

    with pytest.raises(LibraryError) as raised:
        fails(own)
    assert raised.value is own
    with pytest.raises(KeyError):
        fails(KeyError("k"))
    with pytest.raises(LibraryError):
        fails(ValueError("no longer passed through"))


def test_nested_decorated_calls_log_one_error_once(caplog: pytest.LogCaptureFixture) -> None:
    @try_catch(reraise_as=LibraryError)
    def inner() -> None:
        raise OSError("disk")

    @try_catch(reraise_as=LibraryError)
    def outer() -> None:
        inner()

    with pytest.raises(LibraryError) as raised:
        outer()
    assert isinstance(raised.value.__cause__, OSError)
    assert len(error_records(caplog)) == 1


def test_success_returns_the_value_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    @try_catch()
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    assert caplog.records == []


def test_custom_logger_is_used(caplog: pytest.LogCaptureFixture) -> None:
    custom = logging.getLogger("tests.custom")

    @try_catch(logger=custom)
    def fails() -> None:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        fails()
    assert [r.name for r in error_records(caplog)] == ["tests.custom"]


def test_async_logs_and_wraps(caplog: pytest.LogCaptureFixture) -> None:
    @try_catch(reraise_as=LibraryError)
    async def fetch() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("reset")

    with pytest.raises(LibraryError, match="fetch: reset"):
        asyncio.run(fetch())
    [record] = error_records(caplog)
    assert record.exception_type == "ConnectionError"  # type: ignore[attr-defined]


def test_cancellation_passes_through_without_a_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        @try_catch(reraise_as=LibraryError)
        async def waits() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(waits())
        await asyncio.wait_for(started.wait(), timeout=5)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scenario())
    assert error_records(caplog) == []


def test_keyboard_interrupt_passes_through_without_a_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @try_catch(reraise_as=LibraryError)
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert error_records(caplog) == []


def test_methods_and_metadata_are_kept() -> None:
    class Manager:
        prefix = "queue:"

        @try_catch
        def key(self, name: str, priority: str = "normal") -> str:
            """Build a key."""
            return f"{self.prefix}{priority}:{name}"

        @try_catch(reraise_as=LibraryError)
        async def akey(self, name: str) -> str:
            """Build a key, async."""
            return self.prefix + name

    manager = Manager()
    assert manager.key("jobs") == "queue:normal:jobs"
    assert asyncio.run(manager.akey("jobs")) == "queue:jobs"
    assert (Manager.key.__name__, Manager.key.__doc__) == ("key", "Build a key.")
    assert str(inspect.signature(Manager.key)) == (
        "(self, name: 'str', priority: 'str' = 'normal') -> 'str'"
    )
    assert inspect.iscoroutinefunction(Manager.akey)


def test_error_class_passed_positionally_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match=r"reraise_as=LibraryError"):
        try_catch(LibraryError)
    with pytest.raises(TypeError, match="reraise_as"):
        try_catch(reraise_as=KeyboardInterrupt)  # type: ignore[arg-type]
