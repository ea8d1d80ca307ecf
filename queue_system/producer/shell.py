"""What QueueManager (sync) and AsyncQueueManager share around the plans: the public
``enqueue`` signature (written once, here), the script call an enqueue sends, and the
translation of driver errors. No I/O here: the managers only send and await.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

import redis

from queue_system.config import QueueConfig
from queue_system.core.retry_policy import QueueRetryConfig
from queue_system.core.types import CallableRef, EnqueueResult
from queue_system.engine.scripts import TOO_MANY_QUEUES
from queue_system.errors import ConfigurationError, QueueUnavailableError
from queue_system.producer.dependent import (
    DependencyFailureMode,
    check_dependencies,
    plan_dependent,
)
from queue_system.producer.plan import EnqueueDraft, EnqueuePlan, draft_enqueue

P = ParamSpec("P")
R = TypeVar("R")


class ScriptCall(Protocol):
    """One script call storing an enqueued item (an EnqueuePlan, or a DependentPlan): which
    script, its keys and arguments, the errors it may raise as the caller's, and how its
    answer reads."""

    keys: list[str]
    args: list[Any]

    @property
    def script(self) -> str: ...

    @property
    def errors(self) -> AbstractContextManager[None]: ...

    def read(self, answer: Sequence[bytes | str]) -> EnqueueResult: ...


@dataclass(kw_only=True, slots=True)
class EnqueueCall:
    """A validated ``enqueue``: its draft (``before_enqueue`` middleware runs on it next) and
    its dependencies (None: a plain enqueue)."""

    config: QueueConfig
    draft: EnqueueDraft
    depends_on: list[str] | None
    on_dependency_failure: str

    def script_call(self, plan: EnqueuePlan) -> ScriptCall:
        """The call that stores the item, once the middleware has run and ``plan`` is encoded."""
        if self.depends_on is None:
            return plan
        # It waits for them: see queue_system.producer.dependent.
        return plan_dependent(
            self.config, self.draft, plan, self.depends_on, self.on_dependency_failure
        )


def enqueue_call(
    config: QueueConfig,
    entity: Any,
    processor: CallableRef,
    queue_name: str | None = None,
    priority: str = "normal",
    operation_id: str | None = None,
    retry_config: QueueRetryConfig | None = None,
    on_success: CallableRef | None = None,
    on_failure: CallableRef | None = None,
    timeout: float | None = None,
    deduplication_key: str | bool | None = None,
    custom_serializer: Callable[[Any], Any] | None = None,
    delay: float | dt.timedelta | None = None,
    run_at: dt.datetime | None = None,
    expires: float | dt.timedelta | dt.datetime | None = None,
    depends_on: Sequence[str] | None = None,
    on_dependency_failure: DependencyFailureMode = "fail",
) -> EnqueueCall:
    """Validate one ``enqueue`` (raises before any I/O). Its parameters after ``config`` are
    the public signature of ``QueueManager.enqueue`` and ``AsyncQueueManager.enqueue``
    (:func:`signature_of`); they are documented there."""
    deps = check_dependencies(
        depends_on,
        on_dependency_failure,
        delay=delay,
        run_at=run_at,
        deduplication_key=deduplication_key,
    )
    draft = draft_enqueue(
        config,
        [entity],
        processor,
        queue_name=queue_name,
        priority=priority,
        operation_ids=[operation_id],
        retry_config=retry_config,
        on_success=on_success,
        on_failure=on_failure,
        timeout=timeout,
        deduplication_key=deduplication_key,
        custom_serializer=custom_serializer,
        delay=delay,
        run_at=run_at,
        expires=expires,
    )
    return EnqueueCall(
        config=config,
        draft=draft,
        depends_on=deps,
        on_dependency_failure=on_dependency_failure,
    )


def signature_of(
    template: Callable[Concatenate[QueueConfig, P], object],
) -> Callable[[Callable[..., R]], Callable[Concatenate[Any, P], R]]:
    """Give a method taking ``(self, *args, **kwargs)`` the parameters of ``template`` after
    its ``config``: for type checkers and IDEs (through ``P``) and for ``help()`` and
    ``inspect.signature`` (through ``__signature__``). The method itself is returned, so a
    call costs nothing more; it passes its arguments on to ``template``, which binds them."""
    parameters = list(inspect.signature(template).parameters.values())[1:]

    def apply(method: Callable[..., R]) -> Callable[Concatenate[Any, P], R]:
        own = inspect.signature(method)
        first = next(iter(own.parameters.values()))
        method.__signature__ = own.replace(parameters=[first, *parameters])  # type: ignore[attr-defined]
        return method

    return apply


class _RedisErrors:
    """The context manager :func:`redis_errors` returns: stateless, so one serves every call
    (a ``@contextmanager`` generator costs a new generator per enqueue)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            raise QueueUnavailableError(f"queue unavailable: Redis did not answer ({exc})") from exc
        if isinstance(exc, redis.ResponseError) and TOO_MANY_QUEUES in str(exc):
            raise ConfigurationError(
                "this namespace already holds max_queues queue names; raise "
                "QueueConfig(max_queues=...) or reuse queue names"
            ) from exc
        return False  # anything else (or nothing) goes on as it is


_REDIS_ERRORS = _RedisErrors()


def redis_errors() -> _RedisErrors:
    """Translate driver errors into library errors (works around sync and async calls)."""
    return _REDIS_ERRORS
