"""The SQL of backups and restores: SQLite's own online copy, the checks of a copy, and their records.

A live WAL database is never copied as a file (the last commits may sit in the -wal file, and a copy taken
while a checkpoint writes is torn). The copy goes through SQLite: the backup API run in one step inside a read
transaction, so it is the snapshot that transaction sees (writers go on appending to the WAL meanwhile), and
the row counts read in that same transaction must equal the copy's. Copying in several steps would release the
snapshot between steps, and every commit of a worker would restart the copy from its first page.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contentq.clock import iso
from contentq.store.db import Store
from contentq.store.migrations import LEGACY_TABLE, MIGRATION_SET, MIGRATIONS

MAIN_TABLES = ("posts", "media", "sends", "jobs", "job_events", "channels", "notifications")
"""Tables whose row counts a backup records and checks (the rest are small or derived)."""

REQUIRED_TABLES = ("posts", "jobs", "sends")
"""A file without these (and a record of contentq's migrations) is not a contentq database, whatever it holds."""

NEWEST_RECORD_SQL = (
    "SELECT MAX(t) FROM (SELECT MAX(updated_at) AS t FROM posts UNION ALL SELECT MAX(updated_at) FROM jobs"
    " UNION ALL SELECT MAX(updated_at) FROM sends UNION ALL SELECT MAX(at) FROM job_events)"
)


def _connect(path: Path, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in MAIN_TABLES if t in tables}


def snapshot_copy(source: Path, dest: Path, busy_timeout_ms: int = 5000) -> dict[str, int]:
    """Copy the live database `source` into `dest` (a new or empty file) with the backup API; returns the row
    counts of the main tables in the snapshot copied."""
    with closing(_connect(source, busy_timeout_ms)) as src, closing(sqlite3.connect(str(dest))) as dst:
        _scratch(dst)
        src.execute("BEGIN")  # deferred: the snapshot is taken by the first read, the counts
        try:
            counts = row_counts(src)
            src.backup(dst)  # pages=-1: one step, inside the snapshot of the counts
        finally:
            src.execute("COMMIT")
    return counts


def _scratch(conn: sqlite3.Connection) -> None:
    """The uncompressed copy is a scratch file (checked, compressed, then removed): no journal and no fsync. A
    1 GB fsync at its end would stall the workers' own commits behind it (bench/backup.py: 2 s)."""
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")


def vacuum_copy(source: Path, dest: Path, busy_timeout_ms: int = 5000) -> dict[str, int]:
    """The other online copy, `VACUUM INTO` (a compacted copy; bench/backup.py compares the two). It cannot run
    inside a transaction, so the counts are the copy's own."""
    with closing(_connect(source, busy_timeout_ms)) as src:
        src.execute("VACUUM INTO ?", (str(dest),))
    with closing(sqlite3.connect(str(dest))) as copy:
        return row_counts(copy)


def copy_file_database(source: Path, dest: Path) -> None:
    """A database file given to restore (a plain copy, or `litestream restore` output) copied through SQLite, so
    a -wal beside it is read as part of it."""
    with closing(_connect(source)) as src, closing(sqlite3.connect(str(dest))) as dst:
        src.backup(dst)


@dataclass
class CopyCheck:
    integrity: str
    """'ok', or the first problems integrity_check found."""
    counts: dict[str, int]
    missing_tables: list[str]
    unknown_migrations: list[str]
    """Migrations the copy has that this version does not know: it comes from a newer contentq."""
    newest_record_at: str | None

    @property
    def ok(self) -> bool:
        return self.integrity == "ok" and not self.missing_tables and not self.unknown_migrations


def check_copy(path: Path, *, quick: bool = False) -> CopyCheck:
    """integrity_check (or quick_check), row counts, and whether it looks like a contentq database."""
    pragma = "quick_check" if quick else "integrity_check"
    try:
        with closing(_connect(path)) as conn:
            try:
                problems = [r[0] for r in conn.execute(f"PRAGMA {pragma}(20)")]
            except sqlite3.DatabaseError as exc:  # damaged beyond what the check itself can walk
                return CopyCheck(f"{pragma} stopped: {exc}", {}, [], [], None)
            if problems != ["ok"]:
                return CopyCheck("; ".join(problems), {}, [], [], None)
            return _contents(conn)
    except sqlite3.DatabaseError as exc:  # not a database at all
        return CopyCheck(f"not a database: {exc}", {}, list(REQUIRED_TABLES), [], None)


def _contents(conn: sqlite3.Connection) -> CopyCheck:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if not tables & {"_sqlite_migrations", LEGACY_TABLE}:
        missing.append("_sqlite_migrations")
    unknown: list[str] = []
    if "_sqlite_migrations" in tables:
        known = {m.key for m in MIGRATIONS}
        rows = conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (MIGRATION_SET,))
        unknown = sorted({r[0] for r in rows} - known)
    newest = None if missing else conn.execute(NEWEST_RECORD_SQL).fetchone()[0]
    return CopyCheck("ok", row_counts(conn), missing, unknown, newest)


def checkpoint(path: Path, busy_timeout_ms: int = 5000) -> tuple[int, int, int]:
    """Write the whole WAL into the database file and empty it: (busy, WAL frames, frames written back);
    busy is 1 when another connection's read kept part of the WAL in use."""
    with closing(_connect(path, busy_timeout_ms)) as conn:
        busy, frames, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy), int(frames), int(done)


# Records ------------------------------------------------------------------------------------------------------


def record_backup(store: Store, record: dict[str, Any]) -> int:
    row = {**record, "row_counts": json.dumps(record.get("row_counts") or {})}
    columns = ", ".join(row)
    cursor = store.execute(
        f"INSERT INTO backups ({columns}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
    )
    return int(cursor.lastrowid or 0)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["row_counts"] = json.loads(row["row_counts"] or "{}")
    row["verified"] = bool(row["verified"])
    return row


def list_backups(store: Store, *, include_removed: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    where = "" if include_removed else " WHERE removed_at IS NULL"
    rows = store.query(f"SELECT * FROM backups{where} ORDER BY taken_at DESC, id DESC LIMIT ?", (limit,))
    return [_decoded(r) for r in rows]


def verified_backups(store: Store) -> list[dict[str, Any]]:
    """Verified backups not rotated away, newest first."""
    rows = store.query("SELECT * FROM backups WHERE verified = 1 AND removed_at IS NULL ORDER BY taken_at DESC")
    return [_decoded(r) for r in rows]


def mark_removed(store: Store, paths: list[str]) -> None:
    if paths:
        stamp = iso()
        with store.transaction() as conn:
            conn.executemany(
                "UPDATE backups SET removed_at = ? WHERE path = ? AND removed_at IS NULL", [(stamp, p) for p in paths]
            )


def carry_over_backups(store: Store, rows: list[dict[str, Any]]) -> int:
    """Records of backups from the database a restore replaced, added to the restored one where missing."""
    have = {(r["taken_at"], r["path"]) for r in store.query("SELECT taken_at, path FROM backups")}
    added = 0
    for row in rows:
        if (row["taken_at"], row["path"]) in have:
            continue
        record = {k: v for k, v in row.items() if k != "id"}
        record_backup(store, record)
        added += 1
    return added


def all_backup_records(path: Path) -> list[dict[str, Any]]:
    """Every backup record of the database file at `path` (nothing when it has no such table yet)."""
    with closing(_connect(path)) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'backups'").fetchone():
            return []
        cursor = conn.execute("SELECT * FROM backups")
        columns = [c[0] for c in cursor.description]
        return [_decoded(dict(zip(columns, r, strict=True))) for r in cursor.fetchall()]


def record_restore(store: Store, source: str, replaced: str | None, newest_record_at: str | None) -> None:
    store.execute(
        "INSERT INTO restores (restored_at, source, replaced, newest_record_at) VALUES (?, ?, ?, ?)",
        (iso(), source, replaced, newest_record_at),
    )


def latest_restore(store: Store) -> dict[str, Any] | None:
    return store.one("SELECT * FROM restores ORDER BY restored_at DESC, id DESC LIMIT 1")


def database_created_at(store: Store) -> str | None:
    """When the database was made: its first migration."""
    value = store.scalar("SELECT MIN(applied_at) FROM _sqlite_migrations")
    return str(value) if value else None
