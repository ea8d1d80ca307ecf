"""Who may use the dashboard: one shared token, a signed session cookie, CSRF tokens.

The operator proves the token once (``/login?token=...`` or the login form); the dashboard
then sets a session cookie ``<nonce>.<HMAC(nonce)>`` (HttpOnly, SameSite=Strict). Every
request is checked (a session cookie, or ``Authorization: Bearer <token>`` for scrapers and
scripts); every comparison is constant-time. Each action form carries a CSRF token derived from
the session (HMAC of its nonce), checked on every POST. Changing the token ends every session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import FormData
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response

#: Environment variable the CLI reads the token from when ``--token`` is not given.
TOKEN_ENV_VAR = "QUEUE_SYSTEM_DASHBOARD_TOKEN"  # noqa: S105 (a variable name)
SESSION_COOKIE = "queue_system_session"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_S = 12 * 3600  # a browser session lasts a working day


def generate_token() -> str:
    """A new random token (32 bytes of entropy, URL-safe)."""
    return secrets.token_urlsafe(32)


class TokenAuth:
    """Checks the token, and signs and checks sessions and CSRF tokens made from it.

    Args:
        token: the shared secret operators log in with.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("token must be a non-empty string")
        self._token = token.encode()
        # A key derived from the token: cookies never carry the token itself.
        self._key = hashlib.sha256(b"queue_system.dashboard.v1\0" + self._token).digest()

    def token_matches(self, given: str | None) -> bool:
        """True when ``given`` is the token (constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def new_session(self) -> str:
        """A fresh session cookie value."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign('session', nonce)}"

    def session_of(self, conn: HTTPConnection) -> str | None:
        """The session nonce of a request with a valid session cookie, else None."""
        value = conn.cookies.get(SESSION_COOKIE, "")
        nonce, _, signature = value.partition(".")
        if nonce and hmac.compare_digest(signature, self._sign("session", nonce)):
            return nonce
        return None

    def bearer_ok(self, conn: HTTPConnection) -> bool:
        """True when the request carries ``Authorization: Bearer <token>``."""
        scheme, _, given = conn.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def csrf_token(self, session: str) -> str:
        """The CSRF token for forms of ``session``."""
        return self._sign("csrf", session)

    def csrf_ok(self, session: str | None, given: str | None) -> bool:
        """True when ``given`` is the CSRF token of ``session`` (constant time)."""
        if session is None or not given:
            return False
        return hmac.compare_digest(given, self.csrf_token(session))

    def _sign(self, purpose: str, value: str) -> str:
        message = f"{purpose}\0{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


async def action_form(request: Request) -> tuple[dict[str, str], FormData] | Response:
    """The form of a POST action, or the 403 answer when its CSRF token is missing or wrong or
    the dashboard is read-only (every action goes through here first)."""
    state = request.app.state
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if not state.auth.csrf_ok(request.state.session, fields.get(CSRF_FIELD)):
        return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403)
    if state.read_only:
        return PlainTextResponse("refused: this dashboard is read-only", status_code=403)
    return fields, form
