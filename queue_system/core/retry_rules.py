"""Which rule decides what happens to a failed run: retry (when) or fail for good. Pure.

Rules, first match wins:

=====================  ===================================================================
``non_retryable``      the processor raised :class:`~queue_system.errors.NonRetryableError`
``give_up_on:<name>``  the exception is (a subclass of) a ``give_up_on`` entry
``not_retry_on``       ``retry_on`` is set and names neither the exception nor a base of it
``max_attempts``       no retries left
``timeout``            the retry would be due past the retry ``timeout``
``retry_after``        :class:`~queue_system.errors.RetryAfter`: retried after its seconds
``retry_on:<name>``    retried on schedule because ``retry_on`` names it
``retry``              retried on schedule (no ``retry_on``)
=====================  ===================================================================

``RetryAfter`` is never filtered by ``retry_on`` / ``give_up_on``: raising it is the
processor's explicit request, bounded by attempts and timeout like any retry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from queue_system.core.retry_policy import QueueRetryConfig, exception_name
from queue_system.errors import NonRetryableError, RetryAfter


@dataclass(frozen=True, kw_only=True)
class RetryDecision:
    """What to do with a failed run: ``due`` (epoch seconds) is None when it fails for good."""

    rule: str
    due: float | None

    @property
    def retry(self) -> bool:
        """Whether the item runs again."""
        return self.due is not None


def class_names(exc: BaseException) -> frozenset[str]:
    """The stored names of ``exc``'s class and of each of its bases (its MRO)."""
    return frozenset(exception_name(cls) for cls in type(exc).__mro__ if cls is not object)


def decide_retry(
    retry: QueueRetryConfig,
    exc: BaseException,
    *,
    retries_done: int,
    first_at: float,
    now: float,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Apply the rules above to a run that raised ``exc`` after ``retries_done`` retries."""
    if isinstance(exc, NonRetryableError):
        return RetryDecision(rule="non_retryable", due=None)
    rule = "retry"
    if isinstance(exc, RetryAfter):
        rule = "retry_after"
    elif retry.give_up_on or retry.retry_on:
        names = class_names(exc)
        for name in retry.give_up_on_names:
            if name in names:
                return RetryDecision(rule=f"give_up_on:{name}", due=None)
        if retry.retry_on:
            matched = next((name for name in retry.retry_on_names if name in names), None)
            if matched is None:
                return RetryDecision(rule="not_retry_on", due=None)
            rule = f"retry_on:{matched}"
    if not retry.has_attempts_left(retries_done):
        return RetryDecision(rule="max_attempts", due=None)
    if isinstance(exc, RetryAfter):
        delay = exc.seconds
    else:
        delay = retry.get_delay_for_attempt(retries_done + 1, rng)
    due = now + delay
    if retry.would_exceed_timeout(first_at, due):
        return RetryDecision(rule="timeout", due=None)
    return RetryDecision(rule=rule, due=due)
