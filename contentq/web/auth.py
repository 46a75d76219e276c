"""The panel's secret and its logins.

People log in with a user name and password (`contentq users add`; contentq/people/) and scripts send a user's
API token (`contentq users token NAME`). Until an owner user exists, the panel's one shared token in
CONTENTQ_HOME/web-token (0600) is the owner's: the API takes it as `Authorization: Bearer …`, the login form
takes it instead of a password. Once an owner exists it no longer logs anybody in (sessions made with it end),
but it stays the server's secret that the sessions' and CSRF tokens' HMACs are keyed by.

A browser that logs in gets a session: a random id per login in an HttpOnly, SameSite=Strict cookie, kept server-side
(table web_sessions, by its SHA-256: the database never holds a usable cookie) with the token it logged in
with, when it began and when it was last used. A session ends at logout, after CONTENTQ_WEB_SESSION_IDLE_MINUTES
unused, CONTENTQ_WEB_SESSION_MAX_HOURS after the login, and when the token is replaced (`contentq web token
--rotate` deletes every session; one made with an older token is refused anyway). A form or fetch that changes
something sends a CSRF token: an HMAC of the session's id keyed by the token, so it dies with the session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from contentq.clock import iso, now, parse
from contentq.errors import ContentqError
from contentq.ops.output_file import write_file
from contentq.redact import register_secret
from contentq.settings import Settings
from contentq.store.db import Store
from contentq.store.web_sessions import (
    add_session,
    end_all_sessions,
    end_expired_sessions,
    end_session,
    find_session,
    set_flash,
    touch_session,
)
from contentq.store.web_sessions import take_flash as take_session_flash

TOKEN_FILE = "web-token"
COOKIE = "contentq_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

TOUCH_EVERY = timedelta(minutes=1)
"""A session's last use is written at most this often: not one database write per request."""


def token_path(settings: Settings) -> Path:
    return settings.home / TOKEN_FILE


def _write(path: Path, token: str) -> None:
    write_file(path, token + "\n", mode=0o600)
    os.chmod(path, 0o600)  # a file replaced by hand keeps no wider mode


def load_token(settings: Settings, *, create: bool = True) -> str:
    """The token, generated on first use; registered with redact so no log or page can show it."""
    path = token_path(settings)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            raise ContentqError(f"no web token yet ({path}); `contentq web token` creates one") from None
        token = ""
    except OSError as exc:
        raise ContentqError(f"cannot read the web token {path}: {exc.strerror or exc}") from None
    if len(token) < 20:
        if token:
            raise ContentqError(f"the web token in {path} is too short; `contentq web token --rotate` replaces it")
        token = secrets.token_urlsafe(32)
        _write(path, token)
    register_secret(token)
    return token


def rotate_token(settings: Settings, store: Store) -> str:
    """A new token; every browser session ends (their open live streams too, within a second)."""
    token = secrets.token_urlsafe(32)
    _write(token_path(settings), token)
    register_secret(token)
    end_all_sessions(store)
    return token


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Session:
    key: str  # the SHA-256 of the cookie's value: the row's id
    flash: str | None  # a message waiting for the next page
    user: str | None = None  # the user logged in; None: logged in with the shared token


def _key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start_session(
    store: Store, settings: Settings, token: str, *, user: str | None = None, address: str = "", agent: str = ""
) -> str:
    """A new login: returns the cookie's value (only its hash is stored). Expired sessions are cleared here."""
    stamp = now()
    end_expired_sessions(
        store,
        seen_before=iso(stamp - timedelta(minutes=settings.web_session_idle_minutes)),
        created_before=iso(stamp - timedelta(hours=settings.web_session_max_hours)),
    )
    value = secrets.token_urlsafe(32)
    add_session(store, _key(value), _mac(token, "session"), iso(stamp), user=user, address=address, agent=agent[:200])
    return value


def current_session(
    store: Store, settings: Settings, token: str, value: str | None, *, touch: bool = True
) -> Session | None:
    """The live session of a cookie's value, or None (unknown, logged out, expired or of an older token).
    With touch, its last use is brought up to now (at most once per TOUCH_EVERY)."""
    if not value or len(value) > 200:
        return None
    key = _key(value)
    row = find_session(store, key)
    if row is None:
        return None
    stamp = now()
    seen = parse(row["seen_at"])
    if (
        not same(row["token_mac"], _mac(token, "session"))
        or stamp - seen > timedelta(minutes=settings.web_session_idle_minutes)
        or stamp - parse(row["created_at"]) > timedelta(hours=settings.web_session_max_hours)
    ):
        end_session(store, key)
        return None
    if touch and stamp - seen >= TOUCH_EVERY:
        touch_session(store, key, iso(stamp))
    return Session(key, row["flash"], row["user"])


def logout(store: Store, session: Session) -> None:
    end_session(store, session.key)


def csrf_token(token: str, session: Session) -> str:
    """The session's CSRF token: valid for this login only, and only while the token is the same."""
    return _mac(token, f"csrf:{session.key}")


def flash(store: Store, session: Session | None, message: str) -> None:
    """A message for the session's next page (after a form's action); no session (a bearer request), none."""
    if session is not None:
        set_flash(store, session.key, message[:300])


def take_flash(store: Store, session: Session | None) -> str:
    """The session's waiting message, shown once; the only source of a page's message (never the URL)."""
    if session is None or session.flash is None:
        return ""
    return take_session_flash(store, session.key) or ""
