"""``try_catch``: log an exception with its context, then re-raise it (never swallow it)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast, overload

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_PASSTHROUGH: tuple[type[BaseException], ...] = (ValueError, TypeError)
"""Exceptions re-raised unchanged even when ``reraise_as`` is given: bad input, not failures."""

# Set on an exception once a try_catch has logged it, so nested decorated calls log it once.
_LOGGED_FLAG = "_utils_try_catch_logged"
# Names a LogRecord holds already (logging refuses them in ``extra``), and this module's own.
_RECORD_NAMES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "function",
    "exception_type",
}

Context = Callable[..., Mapping[str, Any]]
"""Called with a failed call's arguments; returns fields for its log record."""


@overload
def try_catch(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def try_catch(
    *,
    reraise_as: type[Exception] | None = None,
    passthrough: tuple[type[BaseException], ...] = DEFAULT_PASSTHROUGH,
    logger: logging.Logger | None = None,
    context: Context | None = None,
    caller_errors: tuple[type[BaseException], ...] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def try_catch(
    func: Callable[..., Any] | None = None,
    /,
    *,
    reraise_as: type[Exception] | None = None,
    passthrough: tuple[type[BaseException], ...] = DEFAULT_PASSTHROUGH,
    logger: logging.Logger | None = None,
    context: Context | None = None,
    caller_errors: tuple[type[BaseException], ...] = (),
) -> Any:
    """Log any ``Exception`` a call raises, with context, then re-raise it; never swallow it.

    Contract:

    * The exception is logged at ERROR, with its traceback and the ``extra`` fields
      ``function`` (qualified name) and ``exception_type``, on ``logger`` (default: the logger
      of the function's module). Nested decorated calls log one exception once.
    * With ``context``, ``context(*args, **kwargs)`` (the failed call's arguments) adds fields
      to that record and to its message (``... (queue=emails, operation_id=op-1)``; None
      values stay out of the message). It runs only on failure; if it raises, the record goes
      without it. A field named like a LogRecord attribute is renamed ``context_<name>``.
    * Exceptions in ``caller_errors`` (the caller's own mistake, e.g. a bad argument) are
      logged at WARNING, one line without traceback: the caller's traceback shows where.
    * Exceptions in ``passthrough``, and those already instances of ``reraise_as``, are
      re-raised unchanged.
    * Any other exception is re-raised as ``reraise_as(f"{qualname}: {exc}")`` from the
      original when ``reraise_as`` is given, else re-raised unchanged.
    * ``BaseException``s that are not ``Exception`` (``asyncio.CancelledError``,
      ``KeyboardInterrupt``, ``SystemExit``) pass through without a log record.

    Usable bare (``@try_catch``) or with keyword settings (``@try_catch(reraise_as=...)``).

    Args:
        func: The function, when used bare.
        reraise_as: The library's error class to wrap unexpected exceptions in.
        passthrough: Exception classes never wrapped.
        logger: Where to log; default ``logging.getLogger(func.__module__)``.
        context: Fields for the record, from the call's arguments (never pass secrets).
        caller_errors: Exception classes logged at WARNING without traceback.

    Returns:
        The wrapped function, or a decorator when called with settings only.

    Raises:
        TypeError: ``reraise_as`` passed positionally, or not an ``Exception`` subclass.
    """
    if isinstance(func, type):
        raise TypeError(f"pass the error class by keyword: @try_catch(reraise_as={func.__name__})")
    if reraise_as is not None and not (
        isinstance(reraise_as, type) and issubclass(reraise_as, Exception)
    ):
        raise TypeError(f"reraise_as must be an Exception subclass or None, got {reraise_as!r}")

    def decorate(target: Callable[P, R]) -> Callable[P, R]:
        qualname: str = getattr(target, "__qualname__", repr(target))
        log = logger or logging.getLogger(getattr(target, "__module__", None) or __name__)

        def handle(exc: Exception, args: Any, kwargs: Any) -> Exception | None:
            """Log ``exc`` once; return the exception to raise in its place, or None."""
            if not getattr(exc, _LOGGED_FLAG, False):
                fields = _context_fields(context, args, kwargs)
                shown = ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
                mistake = isinstance(exc, caller_errors)
                log.log(
                    logging.WARNING if mistake else logging.ERROR,
                    "%s raised %s: %s%s",
                    qualname,
                    type(exc).__name__,
                    exc,
                    f" ({shown})" if shown else "",
                    exc_info=None if mistake else exc,
                    extra={**fields, "function": qualname, "exception_type": type(exc).__name__},
                )
                setattr(exc, _LOGGED_FLAG, True)
            if reraise_as is None or isinstance(exc, (*passthrough, reraise_as)):
                return None
            replacement = reraise_as(f"{qualname}: {exc}")
            setattr(replacement, _LOGGED_FLAG, True)
            return replacement

        if inspect.iscoroutinefunction(target):
            async_target = cast(Callable[P, Awaitable[Any]], target)

            @functools.wraps(target)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return await async_target(*args, **kwargs)
                except Exception as exc:
                    replacement = handle(exc, args, kwargs)
                    if replacement is None:
                        raise
                    raise replacement from exc

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(target)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return target(*args, **kwargs)
            except Exception as exc:
                replacement = handle(exc, args, kwargs)
                if replacement is None:
                    raise
                raise replacement from exc

        return wrapper

    return decorate if func is None else decorate(func)


def _context_fields(context: Context | None, args: Any, kwargs: Any) -> dict[str, Any]:
    """``context``'s fields for one failed call, renamed clear of LogRecord's own names."""
    if context is None:
        return {}
    try:
        fields = dict(context(*args, **kwargs))
    except Exception:  # the record of the real failure matters more than its context
        return {}
    named = ((str(k), v) for k, v in fields.items())
    return {(f"context_{k}" if k in _RECORD_NAMES else k): v for k, v in named}
