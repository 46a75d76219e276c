"""The panel's live logins, as the owner sees and ends them (`contentq users sessions`, the Sessions page)."""

from __future__ import annotations

from typing import Any

from contentq.errors import ContentqError, NotFoundError
from contentq.runtime.context import Runtime
from contentq.store import audit
from contentq.store.web_sessions import end_sessions_by_prefix, end_sessions_of, list_sessions

SHORT = 12
"""A session's id as shown: the first characters of its key (the SHA-256 of its cookie, never the cookie)."""


def sessions(runtime: Runtime, user: str | None = None) -> list[dict[str, Any]]:
    rows = list_sessions(runtime.store, user)
    for row in rows:
        row["id"] = row["id"][:SHORT]
        row["user"] = row["user"] or "(panel token)"
    return rows


def revoke(runtime: Runtime, session_id: str) -> dict[str, Any]:
    """End one session by the id a listing shows (or a longer start of its key)."""
    prefix = session_id.strip().lower()
    if len(prefix) < 6 or not all(c in "0123456789abcdef" for c in prefix):
        raise ContentqError(f"session id {session_id!r} is not one: give the id `contentq users sessions` shows")
    found = end_sessions_by_prefix(runtime.store, prefix)
    if not found:
        raise NotFoundError(f"no session {session_id!r} (it may have expired); `contentq users sessions` lists them")
    if len(found) > 1:
        raise ContentqError(f"{len(found)} sessions start with {session_id!r}; give more of the id")
    who = found[0]["user"] or "(panel token)"
    audit.record(runtime.store, "session", found[0]["id"][:SHORT], "revoked", f"session of {who}")
    return {"id": found[0]["id"][:SHORT], "user": who}


def revoke_user(runtime: Runtime, name: str) -> int:
    """End every session of a user."""
    count = end_sessions_of(runtime.store, name)
    audit.record(runtime.store, "session", name, "revoked", f"all {count} session(s) of {name}")
    return count
