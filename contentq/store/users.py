"""Panel users, their API tokens and failed logins (contentq/people/ holds the rules; this module the SQL)."""

from __future__ import annotations

import json
from typing import Any

from contentq.store.db import Store

USER_COLUMNS = "name, role, password_hash, routes, created_at, updated_at"


def _user(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None:
        row["routes"] = json.loads(row["routes"] or "[]")
    return row


def add_user(store: Store, name: str, role: str, password_hash: str | None, routes: list[str], at: str) -> bool:
    """False when a user of that name (any case) exists already."""
    cursor = store.execute(
        "INSERT INTO users (name, role, password_hash, routes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO NOTHING",
        (name, role, password_hash, json.dumps(routes), at, at),
    )
    return cursor.rowcount == 1


def find_user(store: Store, name: str) -> dict[str, Any] | None:
    return _user(store.one(f"SELECT {USER_COLUMNS} FROM users WHERE name = ?", (name,)))


def list_users(store: Store) -> list[dict[str, Any]]:
    rows = store.query(
        f"SELECT {USER_COLUMNS},"
        " (SELECT COUNT(*) FROM user_tokens AS t WHERE t.user = users.name AND t.revoked_at IS NULL) AS tokens,"
        " (SELECT COUNT(*) FROM web_sessions AS s WHERE s.user = users.name) AS sessions,"
        " (SELECT MAX(seen_at) FROM web_sessions AS s WHERE s.user = users.name) AS last_seen,"
        " (SELECT MAX(at) FROM audit_events AS a WHERE a.kind = 'login' AND a.target = users.name"
        "  AND a.action = 'logged_in') AS last_login"
        " FROM users ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'editor' THEN 1 ELSE 2 END, name"
    )
    return [_user(row) or row for row in rows]


def owner_exists(store: Store) -> bool:
    return bool(store.scalar("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'owner')"))


def count_owners(store: Store) -> int:
    return int(store.scalar("SELECT COUNT(*) FROM users WHERE role = 'owner'"))


def set_password_hash(store: Store, name: str, password_hash: str, at: str) -> bool:
    cursor = store.execute(
        "UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?", (password_hash, at, name)
    )
    return cursor.rowcount == 1


def set_role(store: Store, name: str, role: str, routes: list[str], at: str) -> bool:
    cursor = store.execute(
        "UPDATE users SET role = ?, routes = ?, updated_at = ? WHERE name = ?", (role, json.dumps(routes), at, name)
    )
    return cursor.rowcount == 1


def remove_user(store: Store, name: str) -> bool:
    """The user, its tokens and its sessions, in one transaction."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM web_sessions WHERE user = ?", (name,))
        conn.execute("DELETE FROM user_tokens WHERE user = ?", (name,))
        return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 1


# -- API tokens ---------------------------------------------------------------------------------------------


def add_token(store: Store, name: str, token_hash: str, hint: str, at: str, label: str | None = None) -> int:
    cursor = store.execute(
        "INSERT INTO user_tokens (user, hash, hint, label, created_at) VALUES (?, ?, ?, ?, ?)",
        (name, token_hash, hint, label, at),
    )
    return int(cursor.lastrowid or 0)


def find_token(store: Store, token_hash: str) -> dict[str, Any] | None:
    """The live token of that hash with its user's row (None: unknown or revoked)."""
    return _user(
        store.one(
            "SELECT t.id AS token_id, t.last_used_at, u.name, u.role, u.password_hash, u.routes, u.created_at,"
            " u.updated_at FROM user_tokens AS t JOIN users AS u ON u.name = t.user"
            " WHERE t.hash = ? AND t.revoked_at IS NULL",
            (token_hash,),
        )
    )


def touch_token(store: Store, token_id: int, at: str) -> None:
    store.execute("UPDATE user_tokens SET last_used_at = ? WHERE id = ?", (at, token_id))


def list_tokens(store: Store, name: str) -> list[dict[str, Any]]:
    return store.query(
        "SELECT id, label, hint, created_at, last_used_at, revoked_at FROM user_tokens WHERE user = ? ORDER BY id",
        (name,),
    )


def revoke_tokens(store: Store, name: str, at: str, token_id: int | None = None) -> int:
    """Revoke one token of the user (by id), or all of them; returns how many were live."""
    sql = "UPDATE user_tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL"
    params: tuple[Any, ...] = (at, name)
    if token_id is not None:
        sql += " AND id = ?"
        params += (token_id,)
    return int(store.execute(sql, params).rowcount)


# -- failed logins ---------------------------------------------------------------------------------------------


def claim_login_attempt(
    store: Store, name: str, address: str, at: str, *, since: str, max_by_name: int, max_by_address: int
) -> int | None:
    """Count a login attempt as a failure before its password is checked, unless the name or the address already
    has its fill of failures since `since` (None). One write transaction: concurrent attempts cannot all slip in
    under the limit. A login that succeeds drops its row (`drop_login_attempt`). Older rows are cleared here."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM login_failures WHERE at < ?", (since,))
        by_name, by_address = conn.execute(
            "SELECT (SELECT COUNT(*) FROM login_failures WHERE name = ? AND at >= ?),"
            " (SELECT COUNT(*) FROM login_failures WHERE address = ? AND at >= ?)",
            (name, since, address, since),
        ).fetchone()
        if by_name >= max_by_name or by_address >= max_by_address:
            return None
        cursor = conn.execute("INSERT INTO login_failures (at, name, address) VALUES (?, ?, ?)", (at, name, address))
        return int(cursor.lastrowid or 0)


def drop_login_attempt(store: Store, attempt_id: int) -> None:
    store.execute("DELETE FROM login_failures WHERE id = ?", (attempt_id,))


def oldest_failure(store: Store, *, name: str | None, address: str | None, since: str, skip: int) -> str | None:
    """The time of the failure that must leave the window before one more try is let through."""
    column, value = ("name", name) if name is not None else ("address", address)
    found = store.scalar(
        f"SELECT at FROM login_failures WHERE {column} = ? AND at >= ? ORDER BY at DESC LIMIT 1 OFFSET ?",
        (value, since, skip),
    )
    return str(found) if found is not None else None


def forget_login_failures(store: Store, name: str) -> None:
    """A successful login clears its user's failures (the address's stay: they count every name tried)."""
    store.execute("DELETE FROM login_failures WHERE name = ?", (name,))
