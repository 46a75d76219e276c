"""`contentq db backup` and `contentq db check`: a verified, compressed, rotated copy of the live database, and
what doctor, alerts and `db check` say about the database and its backups.

The copy is made by SQLite while the workers run (contentq.store.backups), checked (integrity_check, and the
copy's row counts equal to the snapshot's), gzip-compressed into a file named by its UTC time, private (0600:
the database holds session cursors, notifications and job payloads), recorded in the `backups` table, and
then the folder is rotated: the newest backup of each of the last N days and M ISO weeks that have one stay.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import sqlite3
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contentq.clock import iso, now, parse
from contentq.errors import ContentqError
from contentq.media import human_bytes
from contentq.ops.probe import FAIL, OK, SKIP, WARN, Probe
from contentq.settings import Settings
from contentq.store.backups import (
    CopyCheck,
    check_copy,
    database_created_at,
    mark_removed,
    record_backup,
    snapshot_copy,
    vacuum_copy,
    verified_backups,
)
from contentq.store.db import Store, open_store

NAME = re.compile(r"^contentq-(\d{8}T\d{6}Z)(?:-(\d+))?\.sqlite3\.gz$")
"""Backups that rotation manages: the names `db backup` gives. Any other file in the folder is left alone."""

STAMP = "%Y%m%dT%H%M%SZ"
GZIP_LEVEL = 3
"""Compression takes most of a backup's time: on SQLite pages of text, level 3 is about 4 times as fast as
zlib's default 6 for a file about a quarter larger (docs/operations.md, the figures of bench/backup.py)."""
CHUNK = 1 << 20
MIN_FREE_BYTES = 1 << 30
WAL_WARN_BYTES = 256 << 20
"""A WAL this large means checkpoints cannot finish: a reader holds an old snapshot (a stuck process)."""


@dataclass
class BackupResult:
    path: Path
    taken_at: str
    size_bytes: int
    db_bytes: int
    seconds: float
    verified: bool
    integrity: str
    row_counts: dict[str, int]
    method: str = "backup-api"
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds of each step: copy, check, compress."""
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The columns of its row in the `backups` table."""
        return {
            "taken_at": self.taken_at, "path": str(self.path), "db_bytes": self.db_bytes,
            "verified": int(self.verified), "integrity": self.integrity, "row_counts": self.row_counts,
        }  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["removed"] = [str(p) for p in self.removed]
        data["kept"] = [str(p) for p in self.kept]
        return data


def backup_name(at: datetime, serial: int = 1) -> str:
    return f"contentq-{at.strftime(STAMP)}{'' if serial == 1 else f'-{serial}'}.sqlite3.gz"


def target_path(settings: Settings, given: Path | None, at: datetime) -> Path:
    """Where this backup goes: a named file in the backups folder (or in the folder given), or the file given."""
    if given is not None:
        given = given.expanduser()
        if not given.is_dir() and not str(given).endswith(os.sep):
            if not given.name.endswith(".gz"):
                raise ContentqError(
                    f"{given}: a backup is gzip-compressed, so its name ends in .gz; or give a folder, where it gets "
                    "a name by its time"
                )
            if given.exists():
                raise ContentqError(f"{given} exists: a backup never overwrites a file; give another name or a folder")
            return given
    folder = given if given is not None else settings.backups_dir
    serial = 1
    while (folder / backup_name(at, serial)).exists():  # two backups within one second
        serial += 1
    return folder / backup_name(at, serial)


def _private_file(path: Path) -> None:
    """An empty file only the owner can read, made before anything is written into it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_database_file(path: Path) -> None:
    """A temporary database and the -wal/-shm/-journal SQLite may have left beside it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def compress(source: Path, dest: Path, *, level: int = GZIP_LEVEL) -> int:
    """gzip `source` into `dest` (made 0600, written under a temporary name, renamed when complete); its size."""
    partial = dest.with_name(f".{dest.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    _private_file(partial)
    try:
        with open(source, "rb") as src, open(partial, "r+b") as raw:
            inner_name = dest.name.removesuffix(".gz")
            with gzip.GzipFile(filename=inner_name, mode="wb", fileobj=raw, compresslevel=level) as out:
                shutil.copyfileobj(src, out, CHUNK)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    _fsync_dir(dest.parent)
    return dest.stat().st_size


def decompress(source: Path, dest: Path) -> None:
    """gunzip `source` into `dest` (an existing private file); a truncated or damaged file says so."""
    try:
        with gzip.open(source, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a disk error (OSError) is not the archive's fault
        raise ContentqError(f"{source}: not a complete gzip file ({exc}); take another backup") from None


@contextlib.contextmanager
def _temporary_copy(folder: Path, name: str) -> Iterator[Path]:
    path = folder / f".{name}.{os.getpid()}.partial-db"
    remove_database_file(path)
    _private_file(path)
    try:
        yield path
    finally:
        remove_database_file(path)


def _space_error(where: Path, exc: BaseException) -> ContentqError:
    return ContentqError(
        f"the backup could not be written in {where}: {getattr(exc, 'strerror', None) or exc}; "
        "free space there or give another folder (`contentq db backup PATH`)"
    )


def make_backup(
    settings: Settings,
    given: Path | None = None,
    *,
    store: Store | None = None,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    method: str = "backup-api",
) -> BackupResult:
    """Copy, verify, compress, record, rotate. Raises ContentqError when the copy cannot be made or fails its check
    (a failed check is recorded too, so the last *good* backup stays the one doctor reports). The records go
    through `store`, or a connection of its own."""
    db = settings.db_path
    if not db.exists():
        raise ContentqError(f"no database at {db}: nothing to back up (check CONTENTQ_HOME)")
    if store is None:
        own = open_store(db, settings.db_busy_timeout_ms)
        try:
            return make_backup(
                settings, given, store=own, keep_daily=keep_daily, keep_weekly=keep_weekly, method=method
            )
        finally:
            own.close()
    started = time.monotonic()
    at = now()
    dest = target_path(settings, given, at)
    _make_folder(dest.parent, db)
    try:
        result = _write_backup(settings, store, dest, at, method)
    except OSError as exc:
        raise _space_error(dest.parent, exc) from None
    except sqlite3.DatabaseError as exc:
        if "full" in str(exc):  # "database or disk is full": the copy's folder
            raise _space_error(dest.parent, exc) from None
        raise ContentqError(
            f"the database could not be read for the copy ({exc}); run `contentq db check`, and keep the last good "
            "backup"
        ) from None
    result.seconds = round(time.monotonic() - started, 3)
    record_backup(store, {**result.record(), "size_bytes": result.size_bytes, "seconds": result.seconds})
    daily = settings.backup_keep_daily if keep_daily is None else keep_daily
    weekly = settings.backup_keep_weekly if keep_weekly is None else keep_weekly
    result.kept, result.removed = rotate(dest.parent, daily, weekly, store)
    return result


def _make_folder(folder: Path, db: Path) -> None:
    """The backup folder (private), with room for the uncompressed copy and the compressed file beside it."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ContentqError(f"cannot create the backup folder {folder}: {exc.strerror or exc}") from None
    wal = Path(f"{db}-wal")
    needed = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    free = shutil.disk_usage(folder).free
    if free < needed * 1.2:
        raise ContentqError(
            f"not enough space in {folder}: {human_bytes(free)} free, the copy needs about {human_bytes(needed)} "
            "while it is compressed; free space or give another folder"
        )


def _write_backup(settings: Settings, store: Store, dest: Path, at: datetime, method: str) -> BackupResult:
    """Copy into a scratch file, check it, compress it to `dest`; a copy that fails its check is recorded and
    raises."""
    copy = vacuum_copy if method == "vacuum-into" else snapshot_copy
    marks = [time.monotonic()]
    with _temporary_copy(dest.parent, dest.name) as tmp:
        counts = copy(settings.db_path, tmp, settings.db_busy_timeout_ms)
        marks.append(time.monotonic())
        checked = check_copy(tmp)
        marks.append(time.monotonic())
        result = BackupResult(dest, iso(at), 0, tmp.stat().st_size, 0.0, checked.integrity == "ok" and
                              checked.counts == counts, checked.integrity, checked.counts, method)  # fmt: skip
        if not result.verified:
            record_backup(store, {**result.record(), "seconds": round(marks[-1] - marks[0], 3), "removed_at": iso()})
            raise ContentqError(_failed_check(checked, counts))
        result.size_bytes = compress(tmp, dest)
        marks.append(time.monotonic())
    steps = ("copy", "check", "compress")
    result.phases = {step: round(b - a, 2) for step, a, b in zip(steps, marks[:-1], marks[1:], strict=True)}
    return result


def _failed_check(checked: CopyCheck, counts: dict[str, int]) -> str:
    if checked.integrity != "ok":
        return (
            f"the copy failed integrity_check ({checked.integrity[:300]}); the database itself may be damaged: "
            "run `contentq db check`, and keep the last good backup"
        )
    return f"the copy's row counts {checked.counts} differ from the database's {counts}; take the backup again"


# Rotation ------------------------------------------------------------------------------------------------------


def _order(path: Path) -> int:
    """A second backup within one second is named -2, -3 …: newer than the first."""
    match = NAME.match(path.name)
    return int(match.group(2) or 1) if match else 0


def backups_in(folder: Path) -> list[tuple[Path, datetime]]:
    """The backups `db backup` named in `folder`, newest first."""
    found: list[tuple[Path, datetime]] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        match = NAME.match(entry.name)
        if match and entry.is_file():
            found.append((entry, datetime.strptime(match.group(1), STAMP).replace(tzinfo=UTC)))
    return sorted(found, key=lambda item: (item[1], _order(item[0])), reverse=True)


def plan_rotation(
    backups: list[tuple[Path, datetime]], keep_daily: int, keep_weekly: int
) -> tuple[list[Path], list[Path]]:
    """(keep, remove): the newest backup of each of the last `keep_daily` days that have one, and of each of the
    last `keep_weekly` ISO weeks that have one (days and weeks in UTC, as in the names). The newest backup is
    always kept: a gap in the backups never leaves the folder empty."""
    ordered = sorted(backups, key=lambda item: (item[1], _order(item[0])), reverse=True)
    keep: list[Path] = []
    days: set[Any] = set()
    weeks: set[Any] = set()
    for path, at in ordered:
        day, week = at.date(), at.isocalendar()[:2]
        wanted = False
        if day not in days and len(days) < keep_daily:
            days.add(day)
            wanted = True
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.add(week)
            wanted = True
        if wanted:
            keep.append(path)
    if ordered and ordered[0][0] not in keep:
        keep.insert(0, ordered[0][0])
    return keep, [p for p, _ in ordered if p not in keep]


def rotate(
    folder: Path, keep_daily: int, keep_weekly: int, store: Store | None = None
) -> tuple[list[Path], list[Path]]:
    """Apply plan_rotation to the folder; the records of removed files are marked removed."""
    keep, remove = plan_rotation(backups_in(folder), keep_daily, keep_weekly)
    removed: list[Path] = []
    for path in remove:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            continue  # left for the next rotation
        removed.append(path)
    if store is not None:
        mark_removed(store, [str(p) for p in removed])
    return keep, removed


# What doctor, alerts and `db check` say ------------------------------------------------------------------------


def last_good_backup(store: Store) -> dict[str, Any] | None:
    """The newest verified backup whose file is still there."""
    for row in verified_backups(store):
        if Path(row["path"]).is_file():
            return row
    return None


def fmt_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass
class BackupAge:
    """How old the last good backup is, and whether that is too old (also when there is none and the database
    has existed for longer than the limit)."""

    last: dict[str, Any] | None
    age_seconds: float | None
    limit_seconds: float
    too_old: bool
    database_age_seconds: float | None

    @property
    def message(self) -> str:
        hours = self.limit_seconds / 3600
        if self.last is None:
            made = self.database_age_seconds
            since = f" in the {fmt_age(made)} since the database was made" if made is not None else ""
            return "no good backup" + since + (f" (limit {hours:g} h)" if self.too_old else "")
        age = fmt_age(self.age_seconds or 0.0)
        return f"the last good backup is {age} old (limit {hours:g} h): {self.last['path']}"


def backup_age(settings: Settings, store: Store) -> BackupAge:
    limit = settings.backup_max_age_hours * 3600.0
    stamp = now()
    last = last_good_backup(store)
    created = database_created_at(store)
    db_age = (stamp - parse(created)).total_seconds() if created else None
    if last is None:
        return BackupAge(None, None, limit, db_age is not None and db_age > limit, db_age)
    age = max(0.0, (stamp - parse(last["taken_at"])).total_seconds())
    return BackupAge(last, age, limit, age > limit, db_age)


BACKUP_FIX = "`contentq db backup` now, and install the backup line of crontab.example"


def backup_probe(settings: Settings, store: Store) -> Probe:
    info = backup_age(settings, store)
    if info.last is None:
        return Probe("backup", WARN, info.message, BACKUP_FIX)
    if info.too_old:
        return Probe("backup", WARN, info.message, BACKUP_FIX)
    last = info.last
    return Probe(
        "backup", OK,
        f"last good backup {fmt_age(info.age_seconds or 0.0)} ago: {last['path']} ({human_bytes(last['size_bytes'])})",
    )  # fmt: skip


def disk_probe(settings: Settings) -> Probe:
    """Free space under CONTENTQ_HOME (and in the backups folder when it is on another file system)."""
    home = settings.home
    parts = []
    low = []
    places = [home]
    backups = settings.backups_dir
    if backups.exists() and backups.stat().st_dev != home.stat().st_dev:
        places.append(backups)
    for place in places:
        free = shutil.disk_usage(place).free
        parts.append(f"{place}: {human_bytes(free)} free")
        if free < MIN_FREE_BYTES:
            low.append(str(place))
    if low:
        return Probe("disk", WARN, "; ".join(parts), "free disk space (`contentq purge`, old backups) under " + low[0])
    return Probe("disk", OK, "; ".join(parts))


def check(settings: Settings, *, quick: bool = False) -> list[Probe]:
    """`contentq db check`: integrity, WAL size, the last good backup, free space."""
    db = settings.db_path
    if not db.exists():
        return [Probe("database", FAIL, f"no database at {db}", "check CONTENTQ_HOME")]
    probes: list[Probe] = []
    checked = check_copy(db, quick=quick)
    pragma = "quick_check" if quick else "integrity_check"
    size = human_bytes(db.stat().st_size)
    if checked.integrity == "ok":
        rows = ", ".join(f"{n} {t}" for t, n in checked.counts.items())
        probes.append(Probe("integrity", OK, f"{db} ({size}): {pragma} ok; {rows}"))
    else:
        probes.append(Probe("integrity", FAIL, f"{db}: {pragma}: {checked.integrity[:500]}",
                            "stop the workers and restore the last good backup (docs/operations.md, the restore "
                            "drill); the damaged file is kept"))  # fmt: skip
    wal = Path(f"{db}-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    if wal_bytes > WAL_WARN_BYTES:
        probes.append(Probe("wal", WARN, f"{wal}: {human_bytes(wal_bytes)}: checkpoints are not finishing",
                            "a process holds an old read (a stuck `sqlite3` shell, a hung command): find it with "
                            f"`fuser {db}`"))  # fmt: skip
    else:
        probes.append(Probe("wal", OK, f"{human_bytes(wal_bytes)} in the write-ahead log"))
    if checked.integrity == "ok":
        probes.append(doctor_probe(settings))
    probes.append(disk_probe(settings))
    return probes


def doctor_probe(settings: Settings) -> Probe:
    """doctor's backup line: read-only (no migration, no file created)."""
    if not settings.db_path.exists():
        return Probe("backup", SKIP, "no database yet")
    store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False)
    try:
        if not store.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'backups'"):
            return Probe("backup", SKIP, "the database is not migrated yet", "run `contentq db migrate`")
        return backup_probe(settings, store)
    finally:
        store.close()
