"""Logging in with a name and password, with a throttle per user name and per client address.

Each try is counted as a failure (name as typed, client address, time) before its password is checked, in one
write transaction with the check of the limit, so concurrent tries cannot all slip in under it; a try that
succeeds drops its row. While a name has CONTENTQ_WEB_LOGIN_MAX_FAILURES failures in the last
CONTENTQ_WEB_LOGIN_WINDOW_MINUTES (or an address has ..._PER_ADDRESS), a login of that name (from that address)
is answered "wait" without looking at the password, and a refused try is not counted: the
window slides, so the right password works again once the oldest failure has left it — nobody can lock an owner
out for longer than the window by hammering the form. The answer to a wrong password is the same for a name
that does not exist, and it costs the same: its password is checked against a dummy argon2 hash.
"""

from __future__ import annotations

from datetime import timedelta
from math import ceil

from contentq.clock import iso, now, parse
from contentq.errors import ContentqError
from contentq.people import users
from contentq.people.roles import Person
from contentq.runtime.context import Runtime
from contentq.store import audit
from contentq.store import users as db


class LoginFailed(ContentqError):
    """A wrong name or password (never which of the two)."""


class LoginThrottled(ContentqError):
    """Too many failures for the name or the address: try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins; try again in {_human(retry_after)}")


def _human(seconds: int) -> str:
    return f"{ceil(seconds / 60)} min" if seconds >= 90 else f"{seconds} s"


def throttle_key(name: str) -> str:
    return name.strip().lower()[:100]


def _window(runtime: Runtime) -> timedelta:
    return timedelta(minutes=runtime.settings.web_login_window_minutes)


def wait_left(runtime: Runtime, key: str, address: str) -> int:
    """Seconds until a login of the name `key` from `address` is let through again (at least 1)."""
    settings, window, stamp = runtime.settings, _window(runtime), now()
    since = iso(stamp - window)
    waits = [1.0]
    for limit, name, by_address in (
        (settings.web_login_max_failures, key, None),
        (settings.web_login_max_failures_per_address, None, address),
    ):
        oldest = db.oldest_failure(runtime.store, name=name, address=by_address, since=since, skip=limit - 1)
        if oldest is not None:
            waits.append((parse(oldest) + window - stamp).total_seconds())
    return ceil(max(waits))


def _claim(runtime: Runtime, key: str, address: str) -> int:
    """Count this try as a failure up front (dropped if it succeeds), or refuse it: LoginThrottled."""
    settings, stamp = runtime.settings, now()
    attempt = db.claim_login_attempt(
        runtime.store, key, address, iso(stamp), since=iso(stamp - _window(runtime)),
        max_by_name=settings.web_login_max_failures, max_by_address=settings.web_login_max_failures_per_address,
    )  # fmt: skip
    if attempt is None:
        raise LoginThrottled(wait_left(runtime, key, address))
    return attempt


def login(runtime: Runtime, name: str, password: str, address: str) -> Person:
    """The person, or LoginThrottled / LoginFailed. Every path that looks at a password runs argon2's verify."""
    key = throttle_key(name)
    attempt = _claim(runtime, key, address)
    row = db.find_user(runtime.store, name.strip()) if users.NAME.match(name.strip()) else None
    if not users.verify_password(row, password):
        raise LoginFailed("wrong user name or password")  # its try stays counted
    assert row is not None
    db.drop_login_attempt(runtime.store, attempt)
    users.rehash_if_needed(runtime, row, password)
    db.forget_login_failures(runtime.store, key)
    return users.person(row, "password")


SHARED_NAME = "(panel token)"
"""The throttle's name for logins with the panel's shared token."""


def shared_token_login(runtime: Runtime, matched: bool, address: str) -> None:
    """A login with the panel's shared token (before an owner user exists), throttled like a password."""
    attempt = _claim(runtime, SHARED_NAME, address)
    if not matched:
        raise LoginFailed("wrong token")
    db.drop_login_attempt(runtime.store, attempt)


def record_login(runtime: Runtime, person: Person, address: str) -> None:
    audit.record(runtime.store, "login", person.name, "logged_in", f"from {address}")
