"""The panel's login sessions: one row per login, keyed by the hash of its cookie (contentq/web/auth.py)."""

from __future__ import annotations

from typing import Any

from contentq.store.db import Store


def add_session(
    store: Store, key: str, token_mac: str, at: str, *, user: str | None = None, address: str = "", agent: str = ""
) -> None:
    store.execute(
        "INSERT INTO web_sessions (id, token_mac, created_at, seen_at, user, address, agent)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key, token_mac, at, at, user, address, agent),
    )


def find_session(store: Store, key: str) -> dict[str, Any] | None:
    return store.one("SELECT id, token_mac, created_at, seen_at, flash, user FROM web_sessions WHERE id = ?", (key,))


def list_sessions(store: Store, user: str | None = None) -> list[dict[str, Any]]:
    """Every live login (expired ones are cleared at the next login), newest use first; `id` is its key."""
    where, params = ("WHERE user = ?", (user,)) if user is not None else ("", ())
    return store.query(
        f"SELECT id, user, address, agent, created_at, seen_at FROM web_sessions {where} ORDER BY seen_at DESC",
        params,
    )


def end_sessions_of(store: Store, user: str) -> int:
    """Every login of a user ends (its password changed, it was removed or revoked by the owner)."""
    return int(store.execute("DELETE FROM web_sessions WHERE user = ?", (user,)).rowcount)


def end_sessions_by_prefix(store: Store, prefix: str) -> list[dict[str, Any]]:
    """The sessions whose key starts with `prefix` (a listing shows the first 12 characters), ended."""
    with store.transaction() as conn:
        cursor = conn.execute(
            "SELECT id, user FROM web_sessions WHERE substr(id, 1, ?) = ?", (len(prefix), prefix.lower())
        )
        rows = [{"id": r[0], "user": r[1]} for r in cursor.fetchall()]
        if len(rows) == 1:
            conn.execute("DELETE FROM web_sessions WHERE id = ?", (rows[0]["id"],))
    return rows


def touch_session(store: Store, key: str, at: str) -> None:
    store.execute("UPDATE web_sessions SET seen_at = ? WHERE id = ?", (at, key))


def end_session(store: Store, key: str) -> None:
    store.execute("DELETE FROM web_sessions WHERE id = ?", (key,))


def end_all_sessions(store: Store) -> int:
    """Every login ends (the panel's token was replaced); returns how many there were."""
    return int(store.execute("DELETE FROM web_sessions").rowcount)


def end_expired_sessions(store: Store, *, seen_before: str, created_before: str) -> int:
    cursor = store.execute(
        "DELETE FROM web_sessions WHERE seen_at < ? OR created_at < ?", (seen_before, created_before)
    )
    return int(cursor.rowcount)


def set_flash(store: Store, key: str, message: str) -> None:
    store.execute("UPDATE web_sessions SET flash = ? WHERE id = ?", (message, key))


def take_flash(store: Store, key: str) -> str | None:
    """The session's message, cleared: each is shown once."""
    with store.transaction() as conn:
        row = conn.execute("SELECT flash FROM web_sessions WHERE id = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        conn.execute("UPDATE web_sessions SET flash = NULL WHERE id = ?", (key,))
    return str(row[0])
