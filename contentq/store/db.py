"""Opening the database: WAL, a busy timeout, migrations applied on open."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contentq.errors import ContentqError
from contentq.store.migrations import apply_migrations, up_to_date
from contentq.store.wait import DatabaseWait, cause_of

if TYPE_CHECKING:
    import sqlite_utils

SQLITE_INT_MAX = 2**63 - 1
"""The largest INTEGER SQLite stores: ids and limits from outside are checked against it."""


class Store:
    """One SQLite connection with the transaction helper every compare-and-set goes through; its sqlite-utils
    Database (`db`) is made on first use: most processes run plain SQL only and never import sqlite-utils."""

    def __init__(
        self, path: Path, busy_timeout_ms: int = 5000, wait_seconds: float | None = 60.0, *, quiet: bool = False
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.wait = DatabaseWait(path, wait_seconds, quiet=quiet)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                str(path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ContentqError(f"cannot open the database {path}: {exc}; check CONTENTQ_HOME") from None
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        with self.translate_errors():
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.conn = conn
        self._lock = threading.RLock()

    @cached_property
    def db(self) -> sqlite_utils.Database:
        from contentq.store.sqlite_utils_loader import load_sqlite_utils

        database: sqlite_utils.Database = load_sqlite_utils().Database(self.conn)
        return database

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """A busy database or a full disk met where it cannot be waited out here (inside a transaction, a
        migration) becomes a DatabaseUnavailableError, which a job's runner waits out; other errors pass."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            cause = cause_of(exc)
            if cause is None:
                raise
            raise self.wait.give_up(cause, None) from None

    @contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front so CAS reads are not stale. Taking the
        lock waits out a busy database (see store/wait.py); once taken, no other writer can refuse us."""

        def begin() -> None:
            self._lock.acquire()  # held for the whole transaction: this connection is shared by threads
            try:
                self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except BaseException:
                self._lock.release()
                raise

        with self.translate_errors():
            self.wait.run(begin)
        try:
            with self.translate_errors():
                try:
                    yield self.conn
                except BaseException:
                    if self.conn.in_transaction:  # SQLite ends it by itself on some errors (a full disk)
                        self.conn.execute("ROLLBACK")
                    raise
                else:
                    try:
                        self.conn.execute("COMMIT")
                    except BaseException:
                        # A COMMIT refused (a statement still in progress, a full disk) must not leave this shared
                        # connection inside the transaction, holding the write lock for good.
                        if self.conn.in_transaction:
                            self.conn.execute("ROLLBACK")
                        raise
        finally:
            self._lock.release()

    def _run(self, fn: Any) -> Any:
        """One statement under the lock, tried again while the database is busy or the disk full; the lock is let
        go between tries so that this store's other threads are not held by the wait."""

        def locked() -> Any:
            with self._lock:
                if self.conn.in_transaction:  # inside this thread's transaction: no retry of one statement
                    with self.translate_errors():
                        return fn()
                return fn()

        with self.translate_errors():
            return self.wait.run(locked)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self._run(lambda: self.conn.execute(sql, params))
        return cursor

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            cursor = self.conn.execute(sql, params)
            columns = [c[0] for c in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

        rows: list[dict[str, Any]] = self._run(read)
        return rows

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self._run(lambda: self.conn.execute(sql, params).fetchone())
        return row[0] if row else None

    def close(self) -> None:
        self.conn.close()


def open_store(
    path: Path,
    busy_timeout_ms: int = 5000,
    migrate: bool = True,
    wait_seconds: float | None = 60.0,
    *,
    quiet: bool = False,
) -> Store:
    store = Store(path, busy_timeout_ms, wait_seconds, quiet=quiet)
    if migrate:
        with store.translate_errors():
            if not up_to_date(store.conn):
                _migrate_once(store)
    return store


def _migrate_once(store: Store) -> None:
    """Apply the pending migrations, one process at a time (a lock file beside the database): at the first start
    every program opens the database at once, and those that only waited find it migrated and need not import
    sqlite-utils (about 13 MiB a process, kept until it exits). The migration's own IMMEDIATE transaction still
    guards a database on a file system without locks."""
    # Not named like the database (contentq.migrate-lock): `contentq.db*` stays the database and its WAL files.
    lock_path = store.path.with_name(f"{store.path.stem}.migrate-lock")
    try:
        lock = open(lock_path, "a")  # noqa: SIM115 - closed below
    except OSError:  # a read-only directory: the transaction alone decides
        apply_migrations(store.db)
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not up_to_date(store.conn):
            apply_migrations(store.db)
    finally:
        lock.close()
