"""CallableRegistry: which processors and callbacks a worker may run, looked up by name.

Names read back from Redis are untrusted. A name runs only if the application registered it
in this process, or if its module lies under one of ``allowed_modules`` (then, and only then,
the module is imported). Nothing else is ever imported.

Names have the form ``"module:qualname"`` (what a callable passed to ``enqueue`` is stored
as) or any alias given to :meth:`CallableRegistry.register`.

A name this worker does not know is usually deploy skew (an item enqueued by a newer release,
or before the module that registers it was imported), not poison: :func:`unknown_recheck_due`
says when to look for it again, and when to give up.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from queue_system.errors import UnknownProcessorError

NAME_MAX_LENGTH = 256
UNKNOWN_RECHECK_MIN_S = 1.0  # first re-check of an unknown processor, then the wait doubles...
UNKNOWN_RECHECK_MAX_S = 60.0  # ...up to this many seconds between re-checks

F = TypeVar("F", bound=Callable[..., Any])


def callback_key(callback_name: str, callback_module: str | None = None) -> str:
    """The registry name of ``callback_name`` in ``callback_module`` (``"module:name"``)."""
    return f"{callback_module}:{callback_name}" if callback_module else callback_name


def qualified_name(fn: Callable[..., Any]) -> str:
    """``"module:qualname"`` of a module-level callable; TypeError if it has no stable name."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname:
        raise TypeError(f"{fn!r} has no module/qualified name: register it with a name")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(
            f"{qualname} cannot be found by name in a worker (lambda or nested function): "
            "define it at module level, or register it and pass its registered name"
        )
    return callback_key(qualname, module)


class CallableRegistry:
    """Name → callable map, plus module prefixes whose functions may be imported by name."""

    def __init__(self, allowed_modules: Iterable[str] = ()) -> None:
        self.allowed_modules = tuple(allowed_modules)
        self._by_name: dict[str, Callable[..., Any]] = {}
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    def register(
        self, fn: Callable[..., Any], name: str | None = None, module: str | None = None
    ) -> str:
        """Allow ``fn`` to run under a name; returns that name.

        With no ``name``, the name is ``"module:qualname"``; with ``name`` (and optionally
        ``module``) it is that alias.
        """
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {type(fn).__name__}")
        key = callback_key(name, module) if name else qualified_name(fn)
        validate_name(key)
        with self._lock:
            self._by_name[key] = fn
            self._names.setdefault(id(fn), key)
        return key

    def decorator(self, name: str | None = None, module: str | None = None) -> Callable[[F], F]:
        """A decorator that registers a function (as :meth:`register`) and returns it as is."""

        def register(fn: F) -> F:
            self.register(fn, name, module)
            return fn

        return register

    def names(self) -> list[str]:
        """Every name registered in this process, sorted."""
        with self._lock:
            return sorted(self._by_name)

    def name_for(self, ref: Callable[..., Any] | str) -> str:
        """The stored name for a processor/callback; registers a callable on first use."""
        if isinstance(ref, str):
            return validate_name(ref)
        with self._lock:
            known = self._names.get(id(ref))
        if known is not None and self._by_name.get(known) is ref:
            return known
        return self.register(ref)

    def resolve(self, name: str) -> Callable[..., Any]:
        """The callable for ``name``: registered, or importable from an allowed module."""
        fn = self._by_name.get(name)
        if fn is not None:
            return fn
        module, sep, qualname = name.partition(":")
        if not sep or not self._is_allowed(module):
            raise UnknownProcessorError(
                f"{name!r} is not registered and not under an allowed module "
                "(@config.processor, config.register_callback, or "
                "QueueConfig(allowed_modules=[...]))"
            )
        try:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise UnknownProcessorError(f"{name!r} cannot be imported: {exc}") from exc
        if not callable(target):
            raise UnknownProcessorError(f"{name!r} is not callable")
        return target  # type: ignore[no-any-return]

    def _is_allowed(self, module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in self.allowed_modules)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a plausible registry name, else raise ValueError."""
    if not isinstance(name, str) or not name or len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"processor/callback name must be 1-{NAME_MAX_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in name) or "<" in name:
        raise ValueError(f"processor/callback name {name!r} contains invalid characters")
    return name


def unknown_first_seen(recorded: object, now_s: float) -> float:
    """When a worker first saw an item's processor unknown: the envelope's record, else now.

    A record in the future (another host's clock ahead, or forged) counts from now, so the
    wait never exceeds ``unknown_processor_ttl`` from this worker's point of view.
    """
    if isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        return now_s
    if not math.isfinite(recorded) or recorded > now_s:
        return now_s
    return float(recorded)


def unknown_recheck_due(first_seen_s: float, now_s: float, ttl_s: float) -> float | None:
    """When to look again for an unknown processor; None once ``ttl_s`` has passed.

    The wait equals the time already waited (so re-checks double), from
    ``UNKNOWN_RECHECK_MIN_S`` up to ``UNKNOWN_RECHECK_MAX_S``, and never past the deadline.
    """
    waited = now_s - first_seen_s
    if waited >= ttl_s:
        return None
    delay = min(UNKNOWN_RECHECK_MAX_S, max(UNKNOWN_RECHECK_MIN_S, waited))
    return min(now_s + delay, first_seen_s + ttl_s)
