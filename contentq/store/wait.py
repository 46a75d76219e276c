"""Waiting out a database that cannot take a write: held by another process (SQLITE_BUSY/LOCKED, after SQLite's
own busy timeout) or a full disk (SQLITE_FULL). Both are the machine's trouble, not a statement's: the statement
is tried again with capped backoff, one WARNING when the wait starts and one INFO line when it ends.

A statement that failed this way changed nothing (SQLite applies a statement or a transaction whole), so trying
it again is safe. Workers wait for as long as it takes; the CLI gives up after `limit` seconds.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from contentq.errors import DatabaseFullError, DatabaseLockedError

T = TypeVar("T")

log = logging.getLogger("contentq.store")

BACKOFF_CAP_SECONDS = 5.0
"""Longest sleep between two tries (a busy database also makes each try wait SQLite's busy timeout)."""


def cause_of(exc: BaseException) -> str | None:
    """'busy' or 'full' for the errors that are a wait, None for the others (a bad statement stays an error)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "busy"
    if name.startswith("SQLITE_FULL"):
        return "full"
    text = str(exc)
    if "database is locked" in text or "database table is locked" in text or "database is busy" in text:
        return "busy"
    if "disk is full" in text:
        return "full"
    return None


def free_mb(path: Path) -> float | None:
    try:
        return shutil.disk_usage(path.parent).free / 2**20
    except OSError:
        return None


class DatabaseWait:
    """One per Store: the episode (when it began, why) shared by the threads that use that store."""

    def __init__(self, path: Path, limit: float | None, *, quiet: bool = False) -> None:
        self.path = path
        self.limit = limit
        """Seconds a statement may wait in all; None waits for ever (workers)."""
        self.quiet = quiet
        """No log lines: a worker's side connections (heartbeat, checkpoint) fail fast and leave the telling to
        the job connection, so a worker says it once."""
        self.pause: Callable[[], Callable[[], None]] | None = None
        """Called when a wait starts; returns what to call when it ends. The worker stops the running job's
        timeout clock with it: a job does not time out (and use up a try) over the machine's trouble."""
        self.on_clear: Callable[[float], object] | None = None
        """Called (with the episode's length) after a wait ends; the runtime uses it to grace worker heartbeats."""
        self._since: float | None = None
        self._cause = ""
        self._lock = threading.Lock()

    @property
    def waiting(self) -> bool:
        return self._since is not None

    def message(self, cause: str) -> str:
        if cause == "full":
            free = free_mb(self.path)
            room = f" ({free:.0f} MiB free)" if free is not None else ""
            return f"the disk holding the database {self.path} is full{room}; free some space"
        return f"the database {self.path} is busy (held by another process)"

    def failed(self, cause: str) -> float:
        """Record a refused try; the seconds this episode has lasted."""
        with self._lock:
            if self._since is None:
                self._since, self._cause = time.monotonic(), cause
                if not self.quiet:
                    log.warning("%s; waiting…", self.message(cause))
            return time.monotonic() - self._since

    def ok(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            lasted, cause = time.monotonic() - self._since, self._cause
            self._since = None
        if not self.quiet:
            what = "disk space is back for" if cause == "full" else "the database is free again:"
            log.info("%s %s after %.0f s", what, self.path, lasted)
        if self.on_clear is not None:
            try:
                self.on_clear(lasted)
            except Exception:  # noqa: BLE001 - a courtesy to the liveness check; never fail the statement
                log.debug("after-wait hook failed", exc_info=True)

    def give_up(self, cause: str, waited: float | None) -> Exception:
        text = self.message(cause) + (f"; gave up after {waited:.0f} s" if waited is not None else "")
        if cause == "full":
            return DatabaseFullError(f"{text}, then run the command again")
        return DatabaseLockedError(
            f"{text}; find the process holding it (`fuser {self.path}`), or wait longer with CONTENTQ_DB_WAIT_SECONDS"
        )

    def run(self, fn: Callable[[], T]) -> T:
        """fn(), tried again while the database is busy or the disk full."""
        delay = 0.2
        waited_here = False
        resume: Callable[[], None] | None = None
        try:
            while True:
                try:
                    result = fn()
                except sqlite3.OperationalError as exc:
                    cause = cause_of(exc)
                    if cause is None:
                        raise
                    waited = self.failed(cause)
                    waited_here = True
                    if self.limit is not None and waited >= self.limit:
                        with self._lock:
                            self._since = None  # over: the next refusal starts (and tells of) a new wait
                        raise self.give_up(cause, waited) from None
                    if resume is None and self.pause is not None:
                        resume = self.pause()
                    time.sleep(delay)
                    delay = min(delay * 2, BACKOFF_CAP_SECONDS)
                    continue
                if waited_here:
                    self.ok()  # only a call that waited ends the wait: reads go through a held WAL database
                return result
        finally:
            if resume is not None:
                resume()
