"""The dashboard's per-tier view and its schedules & limits page (issue 15), over HTTP with
Starlette's TestClient against the suite's real server: what it shows, pause / resume as POSTs
with the session's CSRF token and the CLI's audit record, refused and hidden in read-only."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from queue_system import QueueAdmin, QueueConfig, QueueManager, QueueRetryConfig
from queue_system.core.limits import QueueLimits
from queue_system.web import create_app
from queue_system.web.auth import SESSION_COOKIE
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.web import TestClient

TOKEN = "schedules-page-token"
NONE = "\N{EN DASH}"  # what a page shows for no value


def succeed(data: dict[str, Any]) -> None:
    return None


def fail(data: dict[str, Any]) -> None:
    raise ValueError("no")


@pytest.fixture
def seeded(make_config: Callable[..., QueueConfig], raw_redis: redis.Redis) -> QueueConfig:
    """Given: in 'mail' 3 succeeded and 1 failed in high, 2 wait in low (the older one 90 s);
    2 items scheduled an hour ahead in 'mail'; a published cron schedule; limits on 'mail';
    the low tier of 'mail' paused."""
    clock = FakeClock()
    config = make_config(clock=clock)
    manager = QueueManager(config)
    manager.enqueue_batch([{"n": n} for n in range(3)], succeed, queue_name="mail", priority="high")
    no_retry = QueueRetryConfig(max_attempts=0)
    manager.enqueue({"n": 9}, fail, queue_name="mail", priority="high", retry_config=no_retry)
    run_burst(config)
    manager.enqueue({"n": 10}, succeed, queue_name="mail", priority="low")
    clock.advance(60)
    manager.enqueue({"n": 11}, succeed, queue_name="mail", priority="low")
    manager.enqueue_batch([{"n": 12}, {"n": 13}], succeed, queue_name="mail", delay=3600)
    clock.advance(30)
    published = {
        "name": "nightly-report",
        "processor": "app.jobs:nightly",
        "expression": "30 2 * * *",
        "every_ms": None,
        "timezone": "Europe/Berlin",
        "queue_name": "reports",
        "priority": "normal",
        "catch_up": "none",
        "worker": "host:1234:abc",
        "published_at": int(clock.time() * 1000),
    }
    raw_redis.hset(config.keys.cron_schedules, "nightly-report", json.dumps(published))
    admin = QueueAdmin(config)
    admin.set_limits("mail", QueueLimits(max_concurrency=4, rate_limit="100/m"))
    admin.pause("mail", "low")
    return config


def login(client: TestClient) -> None:
    answer = client.get("/login", params={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 303 and SESSION_COOKIE in answer.cookies


@pytest.fixture
def client(seeded: QueueConfig) -> Iterator[TestClient]:
    with TestClient(create_app(seeded, token=TOKEN)) as test_client:
        login(test_client)
        yield test_client


def tier_row(page: str, queue: str, priority: str) -> list[str]:
    row = re.search(rf'<tr data-tier="{re.escape(queue)}:{priority}">(.*?)</tr>', page, re.DOTALL)
    assert row, page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.DOTALL)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in cells]


def test_overview_shows_each_tier_with_its_oldest_age_and_outcomes(client: TestClient) -> None:
    page = client.get("/fragments/overview").text
    # queue, tier, waiting, oldest age, succeeded, failed, retried, system errors, success rate
    assert tier_row(page, "mail", "high")[1:] == ["high", "0", NONE, "3", "1", "0", "0", "75.0 %"]
    assert tier_row(page, "mail", "low")[1:] == ["low", "2", "90.0 s", "0", "0", "0", "0", NONE]
    assert 'data-tier="mail:normal"' not in page  # nothing happened there: no row


def test_schedules_page_shows_cron_paused_tiers_limits_and_scheduled(client: TestClient) -> None:
    page = client.get("/schedules").text
    assert 'href="/schedules"' in page  # in the nav
    cron = re.search(r'<table class="grid" id="cron">(.*?)</table>', page, re.DOTALL)
    assert cron and "nightly-report" in cron.group(1) and "30 2 * * *" in cron.group(1)
    assert "Europe/Berlin" in cron.group(1) and "host:1234:abc" in cron.group(1)
    assert "app.jobs:nightly" in cron.group(1)
    assert re.search(r"next <time>\d{4}-\d\d-\d\dT", cron.group(1))
    paused = re.search(r'<table class="grid" id="tiers">(.*?)</table>', page, re.DOTALL)
    assert paused
    assert re.search(r'data-tier="mail:low"[^>]*>.*?paused', paused.group(1), re.DOTALL)
    assert "mail:high" in paused.group(1)
    limits = re.search(r'<table class="grid" id="limits">(.*?)</table>', page, re.DOTALL)
    assert limits and "100/m" in limits.group(1) and ">4<" in limits.group(1)
    scheduled = re.search(r'id="scheduled-mail">(\d+)<', page)
    assert scheduled and scheduled.group(1) == "2"


def csrf_of(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/schedules").text)
    assert found
    return found.group(1)


def test_pause_and_resume_a_tier_need_csrf_and_write_the_audit_record(
    client: TestClient, seeded: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    admin = QueueAdmin(seeded)
    form = {"queue": "mail", "priority": "high", "action": "pause"}
    refused = client.post("/schedules/tiers", data=form, follow_redirects=False)
    assert refused.status_code == 403
    assert admin.paused() == {"mail": ["low"]}
    with caplog.at_level(logging.INFO, logger="queue_system.admin"):
        answer = client.post(
            "/schedules/tiers", data={**form, "csrf_token": csrf_of(client)}, follow_redirects=False
        )
        assert answer.status_code == 303
        assert admin.paused() == {"mail": ["high", "low"]}
        form = {"queue": "mail", "priority": "low", "action": "resume"}
        client.post("/schedules/tiers", data={**form, "csrf_token": csrf_of(client)})
    assert admin.paused() == {"mail": ["high"]}
    audits = [r for r in caplog.records if r.name == "queue_system.admin"]
    assert [(r.action, r.queue, r.priority) for r in audits] == [  # type: ignore[attr-defined]
        ("pause", "mail", "high"),
        ("resume", "mail", "low"),
    ]


def test_a_bad_tier_or_action_is_refused(client: TestClient, seeded: QueueConfig) -> None:
    csrf = csrf_of(client)
    for form in (
        {"queue": "mail", "priority": "urgent", "action": "pause"},
        {"queue": "bad name!", "priority": "high", "action": "pause"},
        {"queue": "mail", "priority": "high", "action": "drop"},
    ):
        answer = client.post("/schedules/tiers", data={**form, "csrf_token": csrf})
        assert answer.status_code in (400, 404), form
    assert QueueAdmin(seeded).paused() == {"mail": ["low"]}


def test_read_only_hides_pause_and_resume_and_refuses_them(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN, read_only=True)) as viewer:
        login(viewer)
        page = viewer.get("/schedules").text
        assert "nightly-report" in page
        assert "<button" not in page.split("<main>")[1]
        csrf = re.search(
            r'name="csrf_token" value="([0-9a-f]+)"', viewer.get("/dead-letters/failures").text
        )
        assert csrf
        form = {"queue": "mail", "priority": "low", "action": "resume", "csrf_token": csrf.group(1)}
        assert viewer.post("/schedules/tiers", data=form).status_code == 403
    assert QueueAdmin(seeded).paused() == {"mail": ["low"]}


def test_schedules_page_needs_the_token(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as anonymous:
        assert anonymous.get("/schedules", follow_redirects=False).status_code == 401
        answer = anonymous.post("/schedules/tiers", data={}, follow_redirects=False)
        assert answer.status_code == 401
