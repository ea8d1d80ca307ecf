"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by Selenium, against a uvicorn server and a worker draining a real workload.

Skipped with the reason when no Chromium is installed, except under
QUEUE_SYSTEM_REQUIRE_BROWSER=1 (CI sets it), where a missing browser fails. The test takes the
screenshots the README shows: into docs/ (dashboard-*.png) under
QUEUE_SYSTEM_UPDATE_SCREENSHOTS=1, else into the test's temporary directory (a run leaves the
checkout as it was).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queue_system import QueueConfig, QueueManager, QueueRetryConfig, QueueWorker
from queue_system.engine.embedded_server import free_loopback_port
from tests.support.waiting import wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKEN = "browser-test-token"
REQUIRE_ENV = "QUEUE_SYSTEM_REQUIRE_BROWSER"
UPDATE_ENV = "QUEUE_SYSTEM_UPDATE_SCREENSHOTS"
WORK_S = 0.02  # each item's simulated work, so that draining takes a few refreshes
ITEMS = 700
FIXED = threading.Event()  # set once the "bug" behind the failing item is fixed


def process_order(data: dict[str, Any]) -> dict[str, Any]:
    time.sleep(WORK_S)  # simulated work (not synchronisation)
    return {"order": data["order"], "charged": True}


def charge_card(data: dict[str, Any]) -> str:
    if not FIXED.is_set():
        raise ValueError(f"card {data['card']} declined: gateway misconfigured")
    return "charged"


def _browser_paths() -> tuple[str, str] | None:
    driver = shutil.which("chromedriver")
    binary = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    return (driver, binary) if driver and binary else None


@pytest.fixture
def browser() -> Iterator[Any]:
    paths = _browser_paths()
    if paths is None:
        reason = "no Chromium: install Debian's chromium and chromium-driver to run this test"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[1]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=paths[0]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(make_config: Callable[..., QueueConfig]) -> Iterator[tuple[QueueConfig, str]]:
    """The dashboard on a free loopback port, served by uvicorn in a thread."""
    import uvicorn

    from queue_system.web import create_app

    config = make_config()
    port = free_loopback_port()
    app = create_app(config, token=TOKEN, sample_interval_s=1.0)
    server = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    uv = uvicorn.Server(server)
    thread = threading.Thread(target=uv.run, name="dashboard", daemon=True)
    thread.start()
    wait_until(lambda: uv.started, timeout=20, message="uvicorn started")
    try:
        yield config, f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=20)


class _WorkerThread:
    """A QueueWorker running in its own thread and event loop until stopped."""

    def __init__(self, config: QueueConfig) -> None:
        self.worker = QueueWorker(config, max_workers=2)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.worker.run(),), daemon=True
        )

    def __enter__(self) -> _WorkerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.worker.stop(), self.loop).result(timeout=30)
        self.thread.join(timeout=30)
        self.loop.close()


def _text(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


@pytest.mark.slow
def test_operator_watches_a_drain_and_fixes_a_failure(
    browser: Any, server: tuple[QueueConfig, str], tmp_path: Path
) -> None:
    config, base = server
    shots = DOCS if os.environ.get(UPDATE_ENV) == "1" else tmp_path
    manager = QueueManager(config)
    FIXED.clear()
    # Given: one failed charge in failures, and a backlog of orders nobody works on yet.
    manager.enqueue(
        {"card": "4242"},
        charge_card,
        queue_name="payments",
        operation_id="charge-4242",
        retry_config=QueueRetryConfig(max_attempts=0),
    )
    with _WorkerThread(config):
        wait_until(
            lambda: (manager.get_operation("charge-4242") or {}).get("status") == "failed",
            message="the charge failed",
        )
    manager.enqueue_batch([{"order": n} for n in range(ITEMS)], process_order, queue_name="orders")
    manager.enqueue_batch(
        [{"order": n} for n in range(20)], process_order, queue_name="orders", priority="high"
    )

    # When: the operator logs in and looks at the overview.
    browser.get(f"{base}/login?token={TOKEN}")
    wait_until(lambda: _text(browser, "#total-waiting") == str(ITEMS + 20), message="overview")
    browser.execute_script("window.notReloaded = true;")
    with _WorkerThread(config):
        # Then: the counts fall without a reload (the page refreshes its live part).
        wait_until(
            lambda: 0 < int(_text(browser, "#total-waiting") or -1) < ITEMS,
            timeout=30,
            message="waiting count fell on the open page",
        )
        assert browser.execute_script("return window.notReloaded === true;")
        wait_until(
            lambda: int(_text(browser, "#chart-intervals") or 0) >= 4,
            timeout=30,
            message="the chart shows a few intervals",
        )
        shots.mkdir(exist_ok=True)
        browser.save_screenshot(str(shots / "dashboard-overview.png"))
        browser.get(f"{base}/workers")
        wait_until(lambda: "No live workers" not in _text(browser, "#workers"), message="worker")
        browser.save_screenshot(str(shots / "dashboard-workers.png"))
        browser.get(f"{base}/schedules")
        wait_until(lambda: "orders:normal" in _text(browser, "#tiers"), message="schedules page")
        browser.get(f"{base}/queues/orders/normal")
        browser.save_screenshot(str(shots / "dashboard-queue.png"))
        wait_until(
            lambda: manager.get_queue_status()[config.keys.queue("orders")] == 0,
            timeout=60,
            message="orders drained",
        )

        # When: the operator opens the failure, fixes the cause and requeues it.
        browser.get(f"{base}/dead-letters/failures")
        browser.save_screenshot(str(shots / "dashboard-failures.png"))
        browser.find_element("link text", "charge-4242").click()
        wait_until(lambda: _text(browser, "#op-status") == "failed", message="operation page")
        assert "gateway misconfigured" in browser.page_source
        browser.save_screenshot(str(shots / "dashboard-operation.png"))
        FIXED.set()
        browser.find_element("id", "requeue-one").click()
        wait_until(lambda: "1 record(s)" in _text(browser, "#confirm-count"), message="confirm")
        browser.find_element("id", "confirm").click()
        wait_until(lambda: "requeue: 1" in _text(browser, "#done"), message="requeued")

        # Then: the operation page shows it complete, again without a reload.
        browser.get(f"{base}/operations/charge-4242")
        browser.execute_script("window.notReloaded = true;")
        wait_until(
            lambda: _text(browser, "#op-status") == "completed",
            timeout=30,
            message="the requeued charge completed",
        )
        assert browser.execute_script("return window.notReloaded === true;")
    names = ("overview", "workers", "queue", "failures", "operation")
    assert all((shots / f"dashboard-{name}.png").stat().st_size > 10_000 for name in names)
