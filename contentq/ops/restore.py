"""`contentq db restore PATH`: put a backup in place of the database, safely, then make Redis match it.

1. Refused while a worker or listener is alive (the `workers` and `listeners` heartbeat rows say which).
2. The backup is unpacked into a private temporary file beside the database and checked: integrity_check, the
   tables of a contentq database, no migration this version does not know.
3. The current database is checkpointed (its WAL written into the file and emptied) and closed. When the last
   connection closes, SQLite removes the -wal and -shm files: if they are still there, another process has the
   database open, and the restore stops (naming the processes when /proc tells).
4. The old file gets a second name (`contentq.db.replaced-<UTC time>`, kept), and the checked copy is renamed
   over `contentq.db` (atomic: there is never a moment without a complete database under that name).
5. The restored database is migrated if it is older, the backup records of the replaced one are carried over,
   the restore is recorded (with the newest time written in the copy: the publish ledger looks in the channel
   for sends after it), and `queue reconcile` re-creates in Redis what the restored record says should run.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from contentq.clock import now, parse
from contentq.errors import ContentqError
from contentq.ops.backup import STAMP, decompress, remove_database_file
from contentq.ops.listening import MISSED_BEATS
from contentq.runtime.context import Runtime
from contentq.runtime.reconcile import reconcile
from contentq.settings import Settings
from contentq.store.backups import (
    CopyCheck,
    all_backup_records,
    carry_over_backups,
    check_copy,
    checkpoint,
    copy_file_database,
    record_restore,
)
from contentq.store.db import open_store
from contentq.store.listeners import get_listeners
from contentq.store.web_sessions import end_all_sessions
from contentq.store.workers import HOST, live_workers

GZIP_MAGIC = b"\x1f\x8b"
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class RestoreResult:
    source: Path
    database: Path
    replaced: Path | None
    counts: dict[str, int]
    newest_record_at: str | None
    carried_backups: int = 0
    sessions_ended: int = 0
    """Panel logins of the backup, ended: one logged out after the backup must not come back."""
    reconciled: list[dict[str, Any]] = field(default_factory=list)
    reconcile_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source), "database": str(self.database),
            "replaced": str(self.replaced) if self.replaced else None, "row_counts": self.counts,
            "newest_record_at": self.newest_record_at, "carried_backups": self.carried_backups,
            "sessions_ended": self.sessions_ended,
            "reconciled": self.reconciled, "reconcile_error": self.reconcile_error,
        }  # fmt: skip


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(settings: Settings) -> list[str]:
    """Workers and listeners that are alive by their heartbeats in the current database."""
    store = open_store(settings.db_path, settings.db_busy_timeout_ms)
    try:
        found = []
        stamp = now()
        for row in live_workers(store, settings.worker_heartbeat_ttl):
            age = (stamp - parse(row["heartbeat_at"])).total_seconds()
            job = f", running {row['current_job']}" if row["current_job"] else ""
            found.append(f"worker {row['name']} (pid {row['pid']} on {row['host']}, heartbeat {age:.0f} s ago{job})")
        limit = max(30.0, MISSED_BEATS * settings.listen_heartbeat)
        for row in get_listeners(store):
            age = (stamp - parse(row["heartbeat_at"])).total_seconds()
            gone = row["host"] == HOST and not _pid_alive(int(row["pid"]))
            if row["state"] != "stopped" and age <= limit and not gone:
                found.append(f"listener {row['name']} (pid {row['pid']} on {row['host']}, heartbeat {age:.0f} s ago)")
        return found
    finally:
        store.close()


def holders(path: Path) -> list[str]:
    """Processes of this machine with the file open (Linux /proc; empty where it cannot be read)."""
    target = str(path.resolve())
    found = []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in (target, f"{target}-wal", f"{target}-shm") for fd in (entry / "fd").iterdir()):
                cmd = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace").strip()
                mine = " (this process)" if int(entry.name) == os.getpid() else ""
                found.append(f"pid {entry.name} ({cmd[:80] or '?'}){mine}")
    return found


def _unpack(source: Path, dest: Path) -> None:
    """The backup into `dest` (an empty private file): gunzipped, or copied through SQLite when it is a plain
    database file (a copy, `litestream restore` output)."""
    try:
        with open(source, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise ContentqError(f"cannot read {source}: {exc.strerror or exc}") from None
    if head.startswith(GZIP_MAGIC):
        decompress(source, dest)
    elif head == SQLITE_MAGIC:
        copy_file_database(source, dest)
    else:
        raise ContentqError(f"{source} is neither a gzip backup nor an SQLite database; give a file `db backup` made")


def _refusal(check: CopyCheck, source: Path) -> str:
    if check.integrity.startswith("not a database"):
        return f"{source} does not hold an SQLite database ({check.integrity}); give a file `db backup` made"
    if check.integrity != "ok":
        return f"{source} fails integrity_check ({check.integrity[:300]}); restore an older backup"
    if check.missing_tables:
        return f"{source} is not a contentq database (no {', '.join(check.missing_tables)} table)"
    return (
        f"{source} comes from a newer contentq (migrations {', '.join(check.unknown_migrations)} are unknown here); "
        "upgrade contentq first"
    )


def swap_in(settings: Settings, copy: Path) -> Path | None:
    """Rename the checked copy over the database, the old file kept under a second name (returned)."""
    db = settings.db_path
    if not db.exists():
        os.replace(copy, db)
        return None
    busy, frames, done = checkpoint(db, settings.db_busy_timeout_ms)
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    if busy or wal.exists() or shm.exists():
        # Our connection was the last only if SQLite could remove them on its close.
        who = holders(db)
        names = "; ".join(who) if who else "the web panel, a `sqlite3` shell, another contentq command?"
        raise ContentqError(
            f"the database is open in another process ({names}): stop it "
            "(`supervisorctl stop 'contentq:*'` stops every contentq program) and run the restore again"
        )
    kept = db.with_name(f"{db.name}.replaced-{now().strftime(STAMP)}")
    try:
        os.link(db, kept)  # the old database under its second name, while contentq.db still names it
    except OSError:
        os.rename(db, kept)  # a file system without hard links: a moment without a database, no more
    os.replace(copy, db)
    with contextlib.suppress(OSError):
        fd = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return kept


def restore(settings: Settings, source: Path, *, run_reconcile: bool = True) -> RestoreResult:
    source = source.expanduser()
    if not source.is_file():
        raise ContentqError(f"{source}: no such file; give a backup (`ls {settings.backups_dir}`)")
    db = settings.db_path
    settings.ensure_home()
    if db.exists():
        alive = running(settings)
        if alive:
            raise ContentqError(
                f"{'; '.join(alive)} still running: stop them first (`supervisorctl stop 'contentq:*'`), "
                "then run the restore again"
            )
    tmp = db.with_name(f".{db.name}.restore-{os.getpid()}.partial")
    remove_database_file(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        try:
            _unpack(source, tmp)
        except OSError as exc:
            raise ContentqError(f"cannot unpack {source} into {db.parent}: {exc.strerror or exc}") from None
        checked = check_copy(tmp)
        if not checked.ok:
            raise ContentqError(_refusal(checked, source))
        replaced = swap_in(settings, tmp)
    finally:
        remove_database_file(tmp)
    result = RestoreResult(source, db, replaced, checked.counts, checked.newest_record_at)
    store = open_store(db, settings.db_busy_timeout_ms)  # migrates a backup of an older version
    try:
        if replaced is not None:
            result.carried_backups = carry_over_backups(store, all_backup_records(replaced))
        record_restore(store, str(source), str(replaced) if replaced else None, checked.newest_record_at)
        # A panel login ended after the backup was taken (a logout, a rotated token) must stay ended.
        result.sessions_ended = end_all_sessions(store)
    finally:
        store.close()
    if run_reconcile:
        runtime = Runtime(settings)
        try:
            runtime.redis  # noqa: B018 - connects (reconcile reads Redis only when SQLite holds pending jobs)
            result.reconciled = reconcile(runtime)
        except (ContentqError, redis.RedisError) as exc:
            result.reconcile_error = f"{exc}; run `contentq queue reconcile` once Redis is reachable"
        finally:
            runtime.close()
    return result
