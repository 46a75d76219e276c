"""Logging in with a name and password, with a throttle per user name and per client address.

Each failure is recorded (name as typed, client address, time). While a name has CONTENTQ_WEB_LOGIN_MAX_FAILURES
failures in the last CONTENTQ_WEB_LOGIN_WINDOW_MINUTES (or an address has ..._PER_ADDRESS), a login of that name
(from that address) is answered "wait" without looking at the password, and a refused try is not counted: the
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


def wait_left(runtime: Runtime, name: str, address: str) -> int:
    """Seconds until a login of `name` from `address` is let through again (0: now)."""
    settings = runtime.settings
    window = timedelta(minutes=settings.web_login_window_minutes)
    stamp = now()
    since = iso(stamp - window)
    key = throttle_key(name)
    by_name, by_address = db.login_failures_since(runtime.store, key, address, since)
    waits = [0.0]
    for count, limit, kwargs in (
        (by_name, settings.web_login_max_failures, {"name": key, "address": None}),
        (by_address, settings.web_login_max_failures_per_address, {"name": None, "address": address}),
    ):
        if count >= limit:
            oldest = db.oldest_failure(runtime.store, since=since, skip=limit - 1, **kwargs)
            if oldest is not None:
                waits.append((parse(oldest) + window - stamp).total_seconds())
    return max(1, ceil(max(waits))) if max(waits) > 0 else 0


def login(runtime: Runtime, name: str, password: str, address: str) -> Person:
    """The person, or LoginThrottled / LoginFailed. Every path that looks at a password runs argon2's verify."""
    wait = wait_left(runtime, name, address)
    if wait:
        raise LoginThrottled(wait)
    row = db.find_user(runtime.store, name.strip()) if users.NAME.match(name.strip()) else None
    if not users.verify_password(row, password):
        stamp = now()
        forget = iso(stamp - timedelta(minutes=runtime.settings.web_login_window_minutes))
        db.add_login_failure(runtime.store, throttle_key(name), address, iso(stamp), forget_before=forget)
        raise LoginFailed("wrong user name or password")
    assert row is not None
    users.rehash_if_needed(runtime, row, password)
    db.forget_login_failures(runtime.store, throttle_key(name))
    return users.person(row, "password")


SHARED_NAME = "(panel token)"
"""The throttle's name for logins with the panel's shared token."""


def shared_token_login(runtime: Runtime, matched: bool, address: str) -> None:
    """A login with the panel's shared token (before an owner user exists), throttled like a password."""
    wait = wait_left(runtime, SHARED_NAME, address)
    if wait:
        raise LoginThrottled(wait)
    if not matched:
        stamp = now()
        forget = iso(stamp - timedelta(minutes=runtime.settings.web_login_window_minutes))
        db.add_login_failure(runtime.store, SHARED_NAME, address, iso(stamp), forget_before=forget)
        raise LoginFailed("wrong token")


def record_login(runtime: Runtime, person: Person, address: str) -> None:
    audit.record(runtime.store, "login", person.name, "logged_in", f"from {address}")
