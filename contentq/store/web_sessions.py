"""The panel's login sessions: one row per login, keyed by the hash of its cookie (contentq/web/auth.py)."""

from __future__ import annotations

from typing import Any

from contentq.store.db import Store


def add_session(store: Store, key: str, token_mac: str, at: str) -> None:
    store.execute(
        "INSERT INTO web_sessions (id, token_mac, created_at, seen_at) VALUES (?, ?, ?, ?)", (key, token_mac, at, at)
    )


def find_session(store: Store, key: str) -> dict[str, Any] | None:
    return store.one("SELECT id, token_mac, created_at, seen_at, flash FROM web_sessions WHERE id = ?", (key,))


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
