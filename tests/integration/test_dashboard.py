"""The dashboard over HTTP (Starlette TestClient against the suite's real server): every page,
every action, auth and CSRF refusals, read-only mode, pagination and the audit records."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from starlette.applications import Starlette
from starlette.routing import Mount

from queue_system import QueueAdmin, QueueConfig, QueueManager, QueueRetryConfig
from queue_system.engine.embedded_server import free_loopback_port
from queue_system.web import create_app
from queue_system.web.auth import SESSION_COOKIE, TOKEN_ENV_VAR
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.web import TestClient

TOKEN = "s3cret-token-for-tests"
NO_RETRY = QueueRetryConfig(max_attempts=0)
HTML = {"accept": "text/html"}


def fail_value(data: dict[str, Any]) -> None:
    raise ValueError(f"bad value {data['n']}")


def succeed(data: dict[str, Any]) -> int:
    return int(data["n"]) * 2


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def seeded(make_config: Callable[..., QueueConfig], clock: FakeClock) -> QueueConfig:
    """Given: 3 failures in 'emails', 2 completed in 'reports', 4 waiting in 'reports'."""
    config = make_config(clock=clock)
    manager = QueueManager(config)
    for n in range(3):
        manager.enqueue(
            {"n": n},
            fail_value,
            queue_name="emails",
            operation_id=f"fail-{n}",
            retry_config=NO_RETRY,
        )
    manager.enqueue({"n": 1}, succeed, queue_name="reports", operation_id="done-1")
    manager.enqueue({"n": 2}, succeed, queue_name="reports", operation_id="done-2")
    run_burst(config)
    for n in range(4):
        manager.enqueue(
            {"n": n, "text": "x" * 500},
            succeed,
            queue_name="reports",
            priority="high" if n == 0 else "normal",
            operation_id=f"wait-{n}",
        )
    return config


def login(client: TestClient, token: str = TOKEN) -> None:
    answer = client.get("/login", params={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert SESSION_COOKIE in answer.cookies


def csrf_of(client: TestClient, path: str = "/dead-letters/failures") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert found, page.text
    return found.group(1)


@pytest.fixture
def client(seeded: QueueConfig) -> Iterator[TestClient]:
    with TestClient(create_app(seeded, token=TOKEN)) as test_client:
        login(test_client)
        yield test_client


# --- auth ---------------------------------------------------------------------------------------


def test_every_page_refuses_a_request_without_the_token(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as anonymous:
        for path in (
            "/",
            "/fragments/overview",
            "/queues/reports/normal",
            "/workers",
            "/operations/fail-0",
            "/dead-letters/failures",
            "/metrics",
        ):
            assert anonymous.get(path, follow_redirects=False).status_code == 401, path
        # A browser is sent to the login page instead.
        answer = anonymous.get("/", headers=HTML, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].endswith("/login")
        # Static files and the login page need no session.
        assert anonymous.get("/login").status_code == 200
        assert anonymous.get("/static/dashboard.js").status_code == 200


def test_a_wrong_token_is_refused_and_sets_no_session(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as anonymous:
        answer = anonymous.post("/login", data={"token": TOKEN + "x"}, follow_redirects=False)
        assert answer.status_code == 403
        assert SESSION_COOKIE not in answer.cookies
        assert anonymous.get("/", follow_redirects=False).status_code == 401


def test_a_forged_session_cookie_is_refused(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as anonymous:
        anonymous.cookies.set(SESSION_COOKIE, "nonce.0123456789abcdef")
        assert anonymous.get("/", follow_redirects=False).status_code == 401


def test_a_session_of_another_token_is_refused(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token="other-token")) as other:
        login(other, "other-token")
        cookie = other.cookies[SESSION_COOKIE]
    with TestClient(create_app(seeded, token=TOKEN)) as anonymous:
        anonymous.cookies.set(SESSION_COOKIE, cookie)
        assert anonymous.get("/", follow_redirects=False).status_code == 401


def test_the_login_form_sets_a_strict_http_only_session(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as browser:
        answer = browser.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert TOKEN.lower() not in cookie  # the cookie never carries the token
        assert browser.get("/").status_code == 200
        browser.post("/logout", follow_redirects=False)
        assert browser.get("/", follow_redirects=False).status_code == 401


def test_a_bearer_token_reads_without_a_session(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as scraper:
        answer = scraper.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
        assert "queue_system_up 1.0" in answer.text
        wrong = scraper.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_the_token_comes_from_the_environment_else_a_random_one(
    seeded: QueueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV_VAR, "from-env")
    assert create_app(seeded).state.token == "from-env"
    monkeypatch.delenv(TOKEN_ENV_VAR)
    first, second = create_app(seeded).state.token, create_app(seeded).state.token
    assert first != second and len(first) >= 40


def test_pages_carry_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


# --- pages --------------------------------------------------------------------------------------


def test_overview_shows_every_queue_and_tier(client: TestClient) -> None:
    page = client.get("/").text
    reports = _row(page, "reports")
    emails = _row(page, "emails")
    # high, normal, low, in flight, scheduled, failures, system errors
    assert reports[:7] == ["1", "3", "0", "0", "0", "0", "0"]
    assert emails[:7] == ["0", "0", "0", "0", "0", "3", "0"]
    assert 'id="total-waiting">4<' in page
    assert 'id="total-failures">3<' in page
    assert "<svg" in page


def test_overview_fragment_is_the_live_part(client: TestClient) -> None:
    fragment = client.get("/fragments/overview")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'id="queues"' in fragment.text


def test_queue_page_lists_waiting_items_in_taking_order(client: TestClient) -> None:
    page = client.get("/queues/reports/normal").text
    ids = re.findall(r'href="/operations/(wait-\d)"', page)
    assert ids == ["wait-1", "wait-2", "wait-3"]
    positions = re.findall(r'<td class="num">(\d+)</td>\s*<td><a href="/operations/', page)
    assert positions == ["2", "3", "4"]  # the high item goes first
    assert "x" * 100 in page and "x" * 500 not in page  # a preview, not the whole payload


def test_queue_page_rejects_a_bad_tier_or_name(client: TestClient) -> None:
    assert client.get("/queues/reports/urgent").status_code == 400
    assert client.get("/queues/reports/normal?page=abc").status_code == 400


def test_operation_page_shows_result_and_timeline(client: TestClient) -> None:
    page = client.get("/operations/done-2").text
    assert 'id="op-status">completed<' in page
    assert "<pre>4</pre>" in page
    assert "finished" in page


def test_operation_page_of_a_failure_shows_the_traceback_and_payload(client: TestClient) -> None:
    page = client.get("/operations/fail-1").text
    assert 'id="op-status">failed<' in page
    assert "ValueError" in page and "Traceback" in page and "bad value 1" in page
    assert 'name="operation_id" value="fail-1"' in page


def test_an_unknown_operation_is_404(client: TestClient) -> None:
    assert client.get("/operations/nope").status_code == 404
    assert client.get("/fragments/operations/nope").status_code == 404


def test_failures_page_filters(client: TestClient) -> None:
    page = client.get("/dead-letters/failures").text
    assert sorted(re.findall(r'value="(fail-\d)"', page)) == ["fail-0", "fail-1", "fail-2"]
    assert "fail-0" not in client.get("/dead-letters/failures?queue=reports").text
    assert "fail-0" in client.get("/dead-letters/failures?error_type=ValueError").text
    assert "fail-0" not in client.get("/dead-letters/failures?error_type=KeyError").text
    assert "fail-0" in client.get("/dead-letters/failures?since_h=1").text
    assert client.get("/dead-letters/failures?since_h=soon").status_code == 400
    assert "Nothing here" in client.get("/dead-letters/system-errors").text
    assert client.get("/dead-letters/other").status_code == 404


def test_workers_page_lists_live_workers(client: TestClient, seeded: QueueConfig) -> None:
    # No worker runs now: the page says so (a live worker is shown by the browser test).
    assert "No live workers" in client.get("/workers").text
    assert client.get("/fragments/workers").status_code == 200


def test_dashboard_mounts_inside_another_app(seeded: QueueConfig) -> None:
    outer = Starlette(routes=[Mount("/ops/queues", app=create_app(seeded, token=TOKEN))])
    with TestClient(outer) as browser:
        answer = browser.get("/ops/queues/login", params={"token": TOKEN}, follow_redirects=False)
        assert answer.headers["location"].endswith("/ops/queues/")
        assert "path=/ops/queues" in answer.headers["set-cookie"].lower()
        page = browser.get("/ops/queues/")
        assert page.status_code == 200
        assert 'href="/ops/queues/queues/reports/normal"' in page.text
        assert browser.get("/ops/queues/static/dashboard.css").status_code == 200


# --- actions ------------------------------------------------------------------------------------


def test_requeue_one_failure_asks_for_confirmation_then_requeues(
    client: TestClient, seeded: QueueConfig, raw_redis: redis.Redis
) -> None:
    csrf = csrf_of(client)
    form = {"csrf_token": csrf, "action": "requeue", "operation_id": "fail-1"}
    # When: the first POST: a dry run and a confirmation page; nothing moves yet.
    confirm = client.post("/dead-letters/failures/actions", data=form)
    assert confirm.status_code == 200
    assert "<strong>1</strong> record(s)" in confirm.text
    assert raw_redis.llen(seeded.keys.failures) == 3
    # When: confirmed.
    done = client.post(
        "/dead-letters/failures/actions", data={**form, "confirm": "1"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert raw_redis.llen(seeded.keys.failures) == 2
    assert raw_redis.llen(seeded.keys.queue("emails")) == 1
    assert QueueManager(seeded).get_operation("fail-1")["status"] == "pending"  # type: ignore[index]
    assert "requeue: 1 record(s)" in client.get(done.headers["location"]).text


def test_purge_a_selection(client: TestClient, seeded: QueueConfig) -> None:
    csrf = csrf_of(client)
    form = {"csrf_token": csrf, "action": "purge", "confirm": "1"}
    form["operation_id"] = ["fail-0", "fail-2"]  # type: ignore[assignment]
    done = client.post("/dead-letters/failures/actions", data=form, follow_redirects=False)
    assert done.status_code == 303
    left = QueueAdmin(seeded).list_dead_letters()
    assert [r["operation_id"] for r in left] == ["fail-1"]


def test_requeue_all_matching_the_filters(client: TestClient, seeded: QueueConfig) -> None:
    csrf = csrf_of(client)
    form = {"csrf_token": csrf, "action": "requeue", "all": "1", "queue": "emails"}
    confirm = client.post("/dead-letters/failures/actions", data=form)
    assert "<strong>3</strong> record(s)" in confirm.text
    client.post("/dead-letters/failures/actions", data={**form, "confirm": "1"})
    assert QueueAdmin(seeded).list_dead_letters() == []


def test_an_action_without_a_selection_is_refused(client: TestClient) -> None:
    answer = client.post(
        "/dead-letters/failures/actions", data={"csrf_token": csrf_of(client), "action": "purge"}
    )
    assert answer.status_code == 400


@pytest.mark.parametrize("csrf", [None, "", "0" * 64])
def test_an_action_without_the_right_csrf_token_is_refused(
    client: TestClient, seeded: QueueConfig, csrf: str | None
) -> None:
    form = {"action": "purge", "all": "1", "confirm": "1"}
    if csrf is not None:
        form["csrf_token"] = csrf
    answer = client.post("/dead-letters/failures/actions", data=form)
    assert answer.status_code == 403
    assert len(QueueAdmin(seeded).list_dead_letters()) == 3


def test_the_csrf_token_of_another_session_is_refused(
    client: TestClient, seeded: QueueConfig
) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as other:
        login(other)
        foreign = csrf_of(other)
    form = {"csrf_token": foreign, "action": "purge", "all": "1", "confirm": "1"}
    assert client.post("/dead-letters/failures/actions", data=form).status_code == 403
    assert len(QueueAdmin(seeded).list_dead_letters()) == 3


def test_a_bearer_token_cannot_act_without_a_session(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN)) as script:
        form = {"action": "purge", "all": "1", "confirm": "1"}
        answer = script.post(
            "/dead-letters/failures/actions",
            data=form,
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert answer.status_code == 403
    assert len(QueueAdmin(seeded).list_dead_letters()) == 3


def test_read_only_shows_no_actions_and_refuses_them(seeded: QueueConfig) -> None:
    with TestClient(create_app(seeded, token=TOKEN, read_only=True)) as viewer:
        login(viewer)
        page = viewer.get("/dead-letters/failures").text
        assert "read-only" in page and "Requeue selected" not in page
        assert "Requeue" not in viewer.get("/operations/fail-0").text
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
        form = {"csrf_token": csrf, "action": "purge", "all": "1", "confirm": "1"}
        answer = viewer.post("/dead-letters/failures/actions", data=form)
        assert answer.status_code == 403
    assert len(QueueAdmin(seeded).list_dead_letters()) == 3


def test_actions_write_the_same_audit_record_as_the_cli(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    csrf = csrf_of(client)
    with caplog.at_level(logging.INFO, logger="queue_system.admin"):
        client.post(
            "/dead-letters/failures/actions",
            data={
                "csrf_token": csrf,
                "action": "requeue",
                "operation_id": "fail-0",
                "confirm": "1",
            },
        )
        client.post(
            "/dead-letters/failures/actions",
            data={"csrf_token": csrf, "action": "purge", "operation_id": "fail-1", "confirm": "1"},
        )
    audits = [r for r in caplog.records if r.name == "queue_system.admin"]
    assert [(r.action, r.operation_ids, r.dry_run) for r in audits] == [  # type: ignore[attr-defined]
        ("requeue", ["fail-0"], False),
        ("purge", ["fail-1"], False),
    ]
    assert all(r.user and r.host for r in audits)  # type: ignore[attr-defined]


# --- pagination ---------------------------------------------------------------------------------

BIG = 100_000


def test_pagination_over_100k_waiting_items_reads_only_the_window(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config()
    key = config.keys.queue("big", "normal")
    # Given: 100k envelopes pushed as producers do (LPUSH: the first pushed is taken first).
    pipe = raw_redis.pipeline(transaction=False)
    for start in range(0, BIG, 10_000):
        pipe.lpush(
            key,
            *(
                f'{{"v":1,"id":"op-{n}","entity":{{"n":{n}}},"processor":"p"}}'
                for n in range(start, start + 10_000)
            ),
        )
    pipe.sadd(config.keys.registry, "big")
    pipe.execute()
    with TestClient(create_app(config, token=TOKEN)) as browser:
        login(browser)
        timings = {}
        for page in (1, 1000, 2000):
            started = time.perf_counter()
            answer = browser.get(f"/queues/big/normal?page={page}&per_page=50")
            timings[page] = (time.perf_counter() - started) * 1000
            assert answer.status_code == 200
            ids = re.findall(r'href="/operations/op-(\d+)"', answer.text)
            first = (page - 1) * 50
            assert ids == [str(n) for n in range(first, first + 50)]
        print(f"queue page over {BIG} items, ms per page: {timings}")
        # The last page clamps; pages beyond it show the last one.
        assert "op-99999" in browser.get("/queues/big/normal?page=99999&per_page=50").text


def _row(page: str, queue: str) -> list[str]:
    """The cell texts after the name in the overview row of ``queue``."""
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', page, re.DOTALL)
    assert row, page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.DOTALL)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in cells[1:]]


def test_a_system_error_can_be_seen_and_purged_but_not_requeued(
    client: TestClient, seeded: QueueConfig, raw_redis: redis.Redis
) -> None:
    # Given: bytes that are no envelope, taken by a worker: a system error without an id.
    raw_redis.lpush(seeded.keys.queue("emails"), b"\xffnot json")
    run_burst(seeded)
    page = client.get("/dead-letters/system-errors").text
    assert page.count("<tr>") == 2, page  # the header row and the record
    csrf = csrf_of(client, "/dead-letters/system-errors")
    form = {"csrf_token": csrf, "action": "requeue", "all": "1"}
    confirm = client.post("/dead-letters/system-errors/actions", data=form)
    assert "<strong>0</strong> record(s)" in confirm.text and "would be skipped" in confirm.text
    form["action"] = "purge"
    client.post("/dead-letters/system-errors/actions", data={**form, "confirm": "1"})
    assert raw_redis.llen(seeded.keys.system_errors) == 0


def test_cancel_from_the_operation_page_needs_csrf_and_is_audited(
    client: TestClient, seeded: QueueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a waiting operation shown with its Cancel button
    assert 'id="cancel"' in client.get("/operations/wait-1").text

    # When a POST comes without the CSRF token, then with it
    refused = client.post("/operations/wait-1/cancel", data={"csrf_token": "0" * 64})
    with caplog.at_level(logging.INFO, logger="queue_system.admin"):
        done = client.post(
            "/operations/wait-1/cancel",
            data={"csrf_token": csrf_of(client)},
            follow_redirects=False,
        )

    # Then only the second one cancelled it, and it wrote the CLI's audit record
    assert refused.status_code == 403
    assert done.status_code == 303
    info = QueueManager(seeded).get_operation("wait-1")
    assert info is not None and info["status"] == "cancelled"
    audits = [r for r in caplog.records if getattr(r, "action", None) == "cancel"]
    assert [(r.operation_id, r.answer) for r in audits] == [("wait-1", "cancelled")]  # type: ignore[attr-defined]


def test_paused_queues_are_marked_on_the_overview(client: TestClient, seeded: QueueConfig) -> None:
    assert '<span class="badge">paused</span>' not in client.get("/").text
    QueueAdmin(seeded).pause("reports")
    assert '<span class="badge">paused</span>' in client.get("/").text


def test_while_redis_is_down_pages_answer_503_and_the_overview_says_why(
    make_config: Callable[..., QueueConfig],
) -> None:
    dead = f"redis://127.0.0.1:{free_loopback_port()}/0"
    config = make_config(redis_url=dead, connection_timeout=0.5)
    with TestClient(create_app(config, token=TOKEN)) as browser:
        login(browser)
        overview = browser.get("/")
        assert overview.status_code == 200 and 'id="redis-down"' in overview.text
        for path in ("/dead-letters/failures", "/operations/x", "/workers", "/queues/a/high"):
            assert browser.get(path).status_code == 503, path
