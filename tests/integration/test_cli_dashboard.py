"""`queue-system dashboard`: safe defaults (loopback, a token always), the missing-extra
message, and a real server whose printed login URL works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from http.cookiejar import CookieJar

import pytest

from queue_system.cli.dashboard import TOKEN_ENV, is_loopback
from queue_system.cli.main import cli
from queue_system.engine.embedded_server import free_loopback_port
from queue_system.web.auth import TOKEN_ENV_VAR
from tests.support.cli import cli_runner
from tests.support.waiting import wait_until


def test_the_cli_and_the_app_read_the_same_variable() -> None:
    assert TOKEN_ENV == TOKEN_ENV_VAR


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_without_a_token_is_refused(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = cli_runner().invoke(cli, ["--url", redis_url, "dashboard", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "not a loopback address: give --token" in result.stderr


def test_without_the_web_extra_the_command_says_what_to_install(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    result = cli_runner().invoke(cli, ["--url", redis_url, "dashboard"])
    assert result.exit_code == 1
    assert "pip install 'queue_system[web]'" in result.stderr


@pytest.mark.slow
def test_the_printed_login_url_opens_the_dashboard(redis_url: str, key_prefix: str) -> None:
    port = free_loopback_port()
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    command = [
        sys.executable,
        "-m",
        "queue_system",
        "--url",
        redis_url,
        "--prefix",
        key_prefix,
        "dashboard",
        "--port",
        str(port),
        "--read-only",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"log in at (http://127\.0\.0\.1:\d+/login\?token=\S+)", line)
        assert found, line
        assert "(read-only)" in line
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

        def overview() -> str | None:
            try:
                with opener.open(found.group(1), timeout=2) as answer:
                    return str(answer.read().decode())
            except OSError:
                return None

        wait_until(lambda: overview() is not None, timeout=20, message="dashboard up")
        assert "Overview" in (overview() or "")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        assert refused.value.code == 401
        refused.value.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
        if process.stderr is not None:
            process.stderr.close()
