"""The retry rules as a pure function: which rule decides, and when the retry is due."""

from __future__ import annotations

import pytest

from queue_system import NonRetryableError, QueueRetryConfig, RetryAfter
from queue_system.core.retry_rules import class_names, decide_retry

NOW = 1_000.0


class AppError(Exception):
    pass


class Throttled(AppError):
    pass


def decide(
    retry: QueueRetryConfig, exc: BaseException, retries_done: int = 0
) -> tuple[str, float | None]:
    decision = decide_retry(retry, exc, retries_done=retries_done, first_at=NOW - 10, now=NOW)
    return decision.rule, None if decision.due is None else decision.due - NOW


PLAIN = QueueRetryConfig(max_attempts=2, delays=[5.0], jitter=0)


@pytest.mark.parametrize(
    ("retry", "exc", "retries_done", "expected"),
    [
        (PLAIN, ValueError(), 0, ("retry", 5.0)),
        (PLAIN, ValueError(), 2, ("max_attempts", None)),
        (PLAIN, NonRetryableError(), 0, ("non_retryable", None)),
        (PLAIN, RetryAfter(30), 0, ("retry_after", 30.0)),
        (PLAIN, RetryAfter(30), 2, ("max_attempts", None)),
        (
            QueueRetryConfig(max_attempts=2, delays=[5.0], timeout=20, jitter=0),
            RetryAfter(60),
            0,
            ("timeout", None),
        ),
        (
            QueueRetryConfig(give_up_on=[AppError]),
            Throttled(),
            0,
            (f"give_up_on:{__name__}.AppError", None),
        ),
        (
            QueueRetryConfig(retry_on=[AppError], delays=[1.0], jitter=0),
            Throttled(),
            0,
            (f"retry_on:{__name__}.AppError", 1.0),
        ),
        (QueueRetryConfig(retry_on=[AppError]), ValueError(), 0, ("not_retry_on", None)),
        (
            QueueRetryConfig(retry_on=[AppError], give_up_on=[Throttled]),
            Throttled(),
            0,
            (f"give_up_on:{__name__}.Throttled", None),
        ),
        # RetryAfter is an explicit request: never filtered by retry_on / give_up_on.
        (
            QueueRetryConfig(retry_on=[KeyError], give_up_on=[Exception]),
            RetryAfter(2),
            0,
            ("retry_after", 2.0),
        ),
        (
            QueueRetryConfig(give_up_on=["Exception"]),
            NonRetryableError(),
            0,
            ("non_retryable", None),
        ),
    ],
)
def test_decide_retry(
    retry: QueueRetryConfig,
    exc: BaseException,
    retries_done: int,
    expected: tuple[str, float | None],
) -> None:
    assert decide(retry, exc, retries_done) == expected


def test_class_names_cover_the_mro_with_qualified_names() -> None:
    assert class_names(Throttled()) == {
        f"{__name__}.Throttled",
        f"{__name__}.AppError",
        "Exception",
        "BaseException",
    }


def test_retry_config_stores_names_and_round_trips() -> None:
    retry = QueueRetryConfig(retry_on=[ConnectionError, "builtins.OSError"], give_up_on=["a.B"])
    assert retry.retry_on == ("ConnectionError", "OSError")
    assert retry.to_dict()["retry_on"] == ["ConnectionError", "OSError"]
    assert QueueRetryConfig.from_dict(retry.to_dict()) == retry
    assert "retry_on" not in QueueRetryConfig().to_dict()  # an older worker reads it as before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"retry_on": "ValueError"}, TypeError),
        ({"retry_on": [42]}, TypeError),
        ({"give_up_on": [""]}, ValueError),
        ({"give_up_on": [int]}, TypeError),
    ],
)
def test_retry_config_refuses_bad_rules(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        QueueRetryConfig(**kwargs)  # type: ignore[arg-type]


def test_retry_after_validates_its_seconds() -> None:
    assert RetryAfter(1.5).seconds == 1.5
    for bad in (-1, float("inf"), float("nan"), True, "5"):
        with pytest.raises(ValueError):
            RetryAfter(bad)  # type: ignore[arg-type]


def test_the_shortcuts_take_the_rules_too() -> None:
    for retry in (
        QueueRetryConfig.fixed(5, retry_on=[OSError], give_up_on=[KeyError]),
        QueueRetryConfig.exponential(max_attempts=2, retry_on=[OSError], give_up_on=[KeyError]),
        QueueRetryConfig.custom([1, 2], retry_on=[OSError], give_up_on=[KeyError]),
    ):
        assert retry.retry_on == ("OSError",) and retry.give_up_on == ("KeyError",)


def test_an_empty_string_is_no_list_of_names() -> None:
    with pytest.raises(TypeError):
        QueueRetryConfig(retry_on="")  # type: ignore[arg-type]
