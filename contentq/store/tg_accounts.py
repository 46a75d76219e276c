"""Telegram accounts in SQLite: the registry (session file, proxy, fingerprint, budget), each account's health as
its workers and listeners last saw it, and the channels each account resolved (an access hash is per account)."""

from __future__ import annotations

import sqlite3
from typing import Any

from contentq.clock import iso
from contentq.store.db import Store

ACCOUNT_FIELDS = ("proxy", "device_model", "system_version", "app_version", "lang_code", "send_budget")
"""What `accounts add` and `accounts set` may change besides the name and the session file."""

HEALTH_STATUSES = ("connected", "unreachable", "logged_out", "banned", "restricted")

DOWN_STATUSES = ("logged_out", "banned")
"""An account in one of these cannot work until the operator acts: the routes that use it wait."""


def accounts_ready(store: Store) -> bool:
    """The database has the accounts tables (a database not migrated since before accounts has not)."""
    return bool(store.scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'tg_accounts'"))


def list_accounts(store: Store) -> list[dict[str, Any]]:
    """Every account with its health (NULL columns when nothing was reported yet), by name."""
    return store.query(
        "SELECT a.*, h.status, h.detail, h.since, h.checked_at, h.reporter, h.user_id, h.username,"
        " h.flood_until, h.flood_seconds, h.flood_during, h.alerted"
        " FROM tg_accounts a LEFT JOIN tg_account_health h ON h.account = a.name ORDER BY a.name"
    )


def get_account(store: Store, name: str) -> dict[str, Any] | None:
    return store.one("SELECT * FROM tg_accounts WHERE name = ?", (name,))


def account_names(store: Store) -> list[str]:
    return [r["name"] for r in store.query("SELECT name FROM tg_accounts ORDER BY name")]


def usable_accounts(store: Store) -> list[str]:
    """Accounts not logged out or banned as far as anyone saw."""
    rows = store.query(
        "SELECT a.name FROM tg_accounts a LEFT JOIN tg_account_health h ON h.account = a.name"
        f" WHERE COALESCE(h.status, '') NOT IN ({', '.join('?' * len(DOWN_STATUSES))}) ORDER BY a.name",
        DOWN_STATUSES,
    )
    return [r["name"] for r in rows]


def insert_account(store: Store, name: str, session_file: str, **fields: Any) -> None:
    unknown = set(fields) - set(ACCOUNT_FIELDS)
    if unknown:
        raise ValueError(f"unknown account field(s) {sorted(unknown)}")
    stamp = iso()
    columns = ["name", "session_file", "created_at", "updated_at", *fields]
    with store.transaction() as conn:
        conn.execute(
            f"INSERT INTO tg_accounts ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [name, session_file, stamp, stamp, *fields.values()],
        )


def update_account(store: Store, name: str, **fields: Any) -> None:
    unknown = set(fields) - set(ACCOUNT_FIELDS)
    if unknown:
        raise ValueError(f"unknown account field(s) {sorted(unknown)}")
    if not fields:
        return
    sets = ", ".join(f"{column} = ?" for column in fields)
    with store.transaction() as conn:
        conn.execute(f"UPDATE tg_accounts SET {sets}, updated_at = ? WHERE name = ?", [*fields.values(), iso(), name])


def delete_account(store: Store, name: str) -> None:
    with store.transaction() as conn:
        conn.execute("DELETE FROM account_channels WHERE account = ?", (name,))
        conn.execute("DELETE FROM tg_account_health WHERE account = ?", (name,))
        conn.execute("DELETE FROM tg_accounts WHERE name = ?", (name,))


# -- health ------------------------------------------------------------------------------------------


def get_health(store: Store, name: str) -> dict[str, Any] | None:
    return store.one("SELECT * FROM tg_account_health WHERE account = ?", (name,))


def record_status(
    store: Store, name: str, status: str, detail: str | None, reporter: str, **who: Any
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Write an account's status (its `since` moves only when the status changes); returns (before, after)."""
    if status not in HEALTH_STATUSES:
        raise ValueError(f"unknown account status {status!r}")
    stamp = iso()
    with store.transaction() as conn:
        before = _health_in(conn, name)
        since = before["since"] if before is not None and before["status"] == status else stamp
        conn.execute(
            "INSERT INTO tg_account_health (account, status, detail, since, checked_at, reporter)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET status = excluded.status,"
            " detail = excluded.detail, since = excluded.since, checked_at = excluded.checked_at,"
            " reporter = excluded.reporter",
            (name, status, detail, since, stamp, reporter),
        )
        if who:
            conn.execute(
                "UPDATE tg_account_health SET user_id = ?, username = ? WHERE account = ?",
                (who.get("user_id"), who.get("username"), name),
            )
        after = _health_in(conn, name)
    assert after is not None
    return before, after


def record_flood(store: Store, name: str, until: str, seconds: int, during: str, reporter: str) -> None:
    """A FLOOD_WAIT asked of the account: kept until it ends, so other jobs of the account wait it out too."""
    stamp = iso()
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO tg_account_health (account, status, since, checked_at, reporter, flood_until, flood_seconds,"
            " flood_during) VALUES (?, 'connected', ?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
            " flood_until = MAX(COALESCE(flood_until, ''), excluded.flood_until), flood_seconds ="
            " excluded.flood_seconds, flood_during = excluded.flood_during, checked_at = excluded.checked_at",
            (name, stamp, stamp, reporter, until, seconds, during),
        )


def claim_alert(store: Store, name: str, episode: str) -> bool:
    """True for the one caller that records the alert of this episode ('status@since'): the admin is told once."""
    with store.transaction() as conn:
        cursor = conn.execute(
            "UPDATE tg_account_health SET alerted = ? WHERE account = ? AND COALESCE(alerted, '') != ?",
            (episode, name, episode),
        )
        return cursor.rowcount == 1


def clear_health(store: Store, name: str) -> None:
    """Forget what was seen of an account (a new login): the next use reports afresh."""
    store.execute("DELETE FROM tg_account_health WHERE account = ?", (name,))


def _health_in(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    cursor = conn.execute("SELECT * FROM tg_account_health WHERE account = ?", (name,))
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([c[0] for c in cursor.description], row, strict=True))


# -- the channels each account resolved --------------------------------------------------------------


def account_channel(store: Store, account: str, ref: str) -> dict[str, Any] | None:
    return store.one("SELECT * FROM account_channels WHERE account = ? AND ref = ?", (account, ref))


def save_account_channel(
    conn: sqlite3.Connection, account: str, ref: str, tg_id: int, access_hash: int | None, title: str
) -> None:
    conn.execute(
        "INSERT INTO account_channels (account, ref, tg_id, access_hash, title, resolved_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (account, ref) DO UPDATE SET tg_id = excluded.tg_id, access_hash = excluded.access_hash,"
        " title = excluded.title, resolved_at = excluded.resolved_at",
        (account, ref, tg_id, access_hash, title, iso()),
    )
