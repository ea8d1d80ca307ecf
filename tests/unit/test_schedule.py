"""core/schedule.py: a schedule's ticks (cron in a time zone, DST included, or an interval)
and which of them fire under each catch_up policy. Pure: explicit times, no clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from queue_system.core.schedule import (
    MAX_TICKS_SCANNED,
    CronSpec,
    operation_id_for,
    ticks_to_fire,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.timezone.utc
MINUTE_MS = 60_000


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: dt.tzinfo = UTC) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=tz).timestamp() * 1000)


def spec(expression: str | None = None, **kwargs: object) -> CronSpec:
    kwargs.setdefault("name", "job")
    kwargs.setdefault("processor", "app:job")
    kwargs.setdefault("queue_name", "job")
    return CronSpec(expression=expression, **kwargs)  # type: ignore[arg-type]


def ticks_between(schedule: CronSpec, start_ms: int, end_ms: int) -> list[int]:
    ticks, tick = [], schedule.next_tick(start_ms)
    while tick is not None and tick <= end_ms:
        ticks.append(tick)
        tick = schedule.next_tick(tick)
    return ticks


def local(tick_ms: int) -> str:
    return dt.datetime.fromtimestamp(tick_ms / 1000, BERLIN).strftime("%H:%M%z")


# --- ticks: cron in a time zone, DST -----------------------------------------------------------


def test_hourly_job_runs_23_times_on_spring_forward_day_in_berlin() -> None:
    hourly = spec("0 * * * *", timezone="Europe/Berlin")
    day = ticks_between(hourly, ms(2026, 3, 29, tz=BERLIN) - 1, ms(2026, 3, 30, tz=BERLIN) - 1)
    assert len(day) == 23
    assert [local(t) for t in day[1:3]] == ["01:00+0100", "03:00+0200"]  # 02:00 does not exist


def test_hourly_job_runs_25_times_on_fall_back_day_in_berlin() -> None:
    hourly = spec("0 * * * *", timezone="Europe/Berlin")
    day = ticks_between(hourly, ms(2026, 10, 25, tz=BERLIN) - 1, ms(2026, 10, 26, tz=BERLIN) - 1)
    assert len(day) == 25
    assert [local(t) for t in day[2:4]] == ["02:00+0200", "02:00+0100"]  # the hour repeats


def test_daily_job_in_skipped_hour_runs_at_first_valid_time_on_spring_forward_day() -> None:
    daily = spec("30 2 * * *", timezone="Europe/Berlin")
    ticks = ticks_between(daily, ms(2026, 3, 28, 12, tz=BERLIN), ms(2026, 3, 31, 12, tz=BERLIN))
    assert [local(t) for t in ticks] == ["03:00+0200", "02:30+0200", "02:30+0200"]


def test_daily_job_in_repeated_hour_runs_once_on_fall_back_day() -> None:
    daily = spec("30 2 * * *", timezone="Europe/Berlin")
    ticks = ticks_between(daily, ms(2026, 10, 24, 12, tz=BERLIN), ms(2026, 10, 27, 12, tz=BERLIN))
    assert [local(t) for t in ticks] == ["02:30+0200", "02:30+0100", "02:30+0100"]
    assert ticks[1] - ticks[0] == 25 * 3600_000  # the 25-hour day: one run, not two


def test_next_tick_from_inside_the_repeated_hour_is_after_it() -> None:
    # cronsim alone answers 00:30Z (before the start) from 02:15+01:00 on the fall-back day.
    daily = spec("30 2 * * *", timezone="Europe/Berlin")
    start = ms(2026, 10, 25, 1, 15)
    assert daily.next_tick(start) == ms(2026, 10, 26, 1, 30)


def test_every_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    every = spec(every_ms=5 * MINUTE_MS)
    assert every.next_tick(ms(2026, 1, 1, 10, 2)) == ms(2026, 1, 1, 10, 5)
    assert every.next_tick(ms(2026, 1, 1, 10, 5)) == ms(2026, 1, 1, 10, 10)


def test_cron_with_seconds_field() -> None:
    assert spec("*/15 * * * * *").next_tick(ms(2026, 1, 1)) == ms(2026, 1, 1) + 15_000


# --- which ticks fire --------------------------------------------------------------------------

EVERY_MINUTE = "* * * * *"
NOON = ms(2026, 6, 1, 12)


def test_due_tick_fires_and_becomes_last() -> None:
    decision = ticks_to_fire(spec(EVERY_MINUTE), last_ms=NOON - MINUTE_MS, now_ms=NOON + 500)
    assert decision.fire == [NOON]
    assert decision.last == NOON
    assert decision.dropped == 0


def test_nothing_fires_before_the_next_tick() -> None:
    decision = ticks_to_fire(spec(EVERY_MINUTE), last_ms=NOON, now_ms=NOON + 59_000)
    assert decision.fire == []
    assert decision.last == NOON


def test_catch_up_none_skips_missed_ticks() -> None:
    # Given: last fired at noon, no worker until 12:10:30 (10 ticks, the newest 30 s old)
    decision = ticks_to_fire(
        spec(EVERY_MINUTE), last_ms=NOON, now_ms=NOON + 10 * MINUTE_MS + 30_000
    )
    # Then: the due 12:10 tick fires, the 9 missed ones are dropped
    assert decision.fire == [NOON + 10 * MINUTE_MS]
    assert decision.dropped == 9


def test_catch_up_none_fires_nothing_when_even_the_newest_tick_was_missed() -> None:
    schedule = spec("0 * * * *")
    decision = ticks_to_fire(schedule, last_ms=NOON, now_ms=NOON + 3 * 3600_000 + 20 * MINUTE_MS)
    assert decision.fire == []
    assert decision.last == NOON + 3 * 3600_000  # skipped for good
    assert decision.dropped == 3


def test_catch_up_last_fires_only_the_newest_missed_tick() -> None:
    schedule = spec("0 * * * *", catch_up="last")
    decision = ticks_to_fire(schedule, last_ms=NOON, now_ms=NOON + 3 * 3600_000 + 20 * MINUTE_MS)
    assert decision.fire == [NOON + 3 * 3600_000]
    assert decision.dropped == 2
    assert decision.dropped_from == NOON + 3600_000


def test_catch_up_all_fires_every_missed_tick() -> None:
    schedule = spec("0 * * * *", catch_up="all")
    decision = ticks_to_fire(schedule, last_ms=NOON, now_ms=NOON + 3 * 3600_000 + 20 * MINUTE_MS)
    assert decision.fire == [NOON + h * 3600_000 for h in (1, 2, 3)]
    assert decision.dropped == 0


def test_catch_up_all_is_bounded_to_the_newest_ticks() -> None:
    schedule = spec(EVERY_MINUTE, catch_up="all")
    decision = ticks_to_fire(
        schedule, last_ms=NOON, now_ms=NOON + 250 * MINUTE_MS, max_catch_up=100
    )
    assert decision.fire == [NOON + m * MINUTE_MS for m in range(151, 251)]
    assert decision.dropped == 150
    assert decision.dropped_from == NOON + MINUTE_MS


def test_catch_up_all_after_a_very_long_gap_fires_the_newest_ticks() -> None:
    schedule = spec(EVERY_MINUTE, catch_up="all")
    now = NOON + (MAX_TICKS_SCANNED + 5_000) * MINUTE_MS
    decision = ticks_to_fire(schedule, last_ms=NOON, now_ms=now, max_catch_up=10)
    assert decision.fire == [now - m * MINUTE_MS for m in range(9, -1, -1)]
    assert decision.last == now
    assert decision.dropped_more


def test_first_sight_fires_only_a_due_tick() -> None:
    schedule = spec(EVERY_MINUTE, catch_up="all")
    assert ticks_to_fire(schedule, last_ms=None, now_ms=NOON + 30_000).fire == [NOON]
    hourly = spec("0 * * * *", catch_up="all")
    assert ticks_to_fire(hourly, last_ms=None, now_ms=NOON + 20 * MINUTE_MS).fire == []


def test_operation_id_is_deterministic() -> None:
    assert operation_id_for("app:job", NOON) == f"cron:app:job:{NOON}"


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expression": "61 * * * *"}, "invalid cron expression"),
        ({"expression": "* * *"}, "invalid cron expression"),
        ({"expression": "* * * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"every_ms": 999}, "at least 1 second"),
        ({}, "exactly one"),
        ({"expression": "* * * * *", "every_ms": 60_000}, "exactly one"),
        ({"expression": "* * * * *", "catch_up": "some"}, "catch_up must be"),
    ],
)
def test_bad_spec_is_refused(kwargs: dict[str, object], message: str) -> None:
    expression = kwargs.pop("expression", None)
    with pytest.raises(ValueError, match=message):
        spec(expression, **kwargs)  # type: ignore[arg-type]
