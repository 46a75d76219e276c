"""`contentq purge`: drop what is past retention, in small transactions so that workers are never blocked.

What goes:
- job records and their event logs, finished before the cutoff; all records of one (kind, key) go together, and
  only when none of them is recent or active, so numbering of later runs of that key stays unique;
- posts that ended (published, failed, duplicate, filtered, rejected, cancelled) before the cutoff, with their
  donor media rows and files (a file shared with a post that stays is kept) and their send records; posts collected
  inside the dedup window stay, because dedup compares new posts with them (content hash and MinHash);
- images no post uses (the images area's `prune_images`, when installed);
- admin notifications older than the cutoff, and the web feed's post change records (`post_changes`) older
  than it;
- RQ's finished, failed and cancelled registries: expired entries, and jobs that ended before the cutoff;
- audit rows (`audit_events`: queues paused, texts edited, users, tokens, sessions, logins) older than
  CONTENTQ_AUDIT_RETENTION_DAYS (365), whatever `older_than` says: the audit trail is kept longer than the rest;
- insights samples, thinned: one an hour of a post's first two days, one a day after (its figures at 24 h are
  kept with the post); subscriber counts likewise, hourly for two days, then daily (docs/insights.md).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq.job import Job
from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry

from contentq.clock import iso, now
from contentq.runtime.context import Runtime
from contentq.settings import QUEUES
from contentq.store import insights as insights_sql
from contentq.store.jobs import ACTIVE, TERMINAL

log = logging.getLogger("contentq.purge")

BATCH_SIZE = 500
"""Rows deleted per transaction: each one holds the write lock for milliseconds, not for the whole purge."""

ENDED_POST_STATES = ("published", "failed", "duplicate", "filtered", "rejected", "cancelled")
"""Post states that are final: such posts go once past retention (and outside the dedup window)."""


@dataclass
class PurgeReport:
    cutoff: str
    dedup_cutoff: str
    dry_run: bool
    removed: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, n: int) -> None:
        self.removed[what] = self.removed.get(what, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "dedup_cutoff": self.dedup_cutoff,
            "dry_run": self.dry_run,
            "removed": self.removed,
            "kept": self.kept,
            "notes": self.notes,
        }


def _placeholders(items: list[Any]) -> str:
    return ",".join("?" for _ in items)


_T = ",".join(f"'{s}'" for s in TERMINAL)
_A = ",".join(f"'{s}'" for s in ACTIVE)
_ENDED = ",".join(f"'{s}'" for s in ENDED_POST_STATES)

# A job goes when it ended before the cutoff and no job of its (kind, key) is active or recent.
_OLD_JOBS = f"""
    FROM jobs AS j
    WHERE j.status IN ({_T}) AND COALESCE(j.finished_at, j.updated_at) < :cutoff
      AND NOT EXISTS (
        SELECT 1 FROM jobs AS k WHERE k.kind = j.kind AND k.key = j.key
          AND (k.status IN ({_A}) OR COALESCE(k.finished_at, k.updated_at) >= :cutoff))
"""

# A post goes when it ended before the cutoff, was collected before the dedup window, and no job works on it.
_OLD_POSTS = f"""
    FROM posts AS p
    WHERE p.state IN ({_ENDED}) AND p.updated_at < :cutoff AND p.collected_at < :dedup_cutoff
      AND NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.post_id = p.id AND j.status IN ({_A}))
"""

_KEPT_FOR_DEDUP = f"""
    SELECT COUNT(*) FROM posts AS p
    WHERE p.state IN ({_ENDED}) AND p.updated_at < :cutoff AND p.collected_at >= :dedup_cutoff
"""


def purge(
    runtime: Runtime,
    older_than: timedelta | None = None,
    dry_run: bool = False,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[str, int], None] | None = None,
) -> PurgeReport:
    """Remove what ended before now - older_than (default: retention_days); with dry_run only count it."""
    settings = runtime.settings
    older_than = older_than if older_than is not None else timedelta(days=settings.retention_days)
    stamp = now()
    params = {
        "cutoff": iso(stamp - older_than),
        "dedup_cutoff": iso(stamp - timedelta(days=settings.dedup_window_days)),
    }
    report = PurgeReport(cutoff=params["cutoff"], dedup_cutoff=params["dedup_cutoff"], dry_run=dry_run)
    for what in ("job records", "job events", "posts", "media rows", "media files", "media bytes",
                 "send records", "notifications", "post changes", "dedup band rows", "insight samples",
                 "subscriber samples", "audit events"):  # fmt: skip
        report.removed[what] = 0
    _purge_jobs(runtime, params, report, batch_size, progress)
    _purge_posts(runtime, params, report, batch_size, progress)
    _prune_dedup(runtime, report)
    _purge_by_time(runtime, params, report, batch_size, "notifications", "notifications", "at")
    _purge_by_time(runtime, params, report, batch_size, "post changes", "post_changes", "at")
    # The admin bot's records (docs/bot.md): alerts and presses by age, prompts once answered or old; its cards
    # go with their posts.
    _purge_by_time(runtime, params, report, batch_size, "bot alerts", "bot_outbox", "created_at")
    _purge_by_time(runtime, params, report, batch_size, "bot presses", "bot_presses", "at")
    _purge_by_time(runtime, params, report, batch_size, "bot prompts", "bot_prompts", "created_at")
    _purge_by_time(runtime, params, report, batch_size, "bot messages", "bot_messages", "at")
    # The audit trail by its own retention (a short --older-than does not take it along).
    audit = {"cutoff": iso(stamp - timedelta(days=settings.audit_retention_days))}
    _purge_by_time(runtime, audit, report, batch_size, "audit events", "audit_events", "at")
    _prune_images(runtime, older_than, report)
    report.add("insight samples", insights_sql.thin_samples(runtime.store, dry_run=dry_run, batch_items=batch_size))
    hourly_since = iso(stamp - timedelta(seconds=insights_sql.HOURLY_FOR_S))
    report.add("subscriber samples", insights_sql.thin_channel_samples(runtime.store, hourly_since, dry_run=dry_run))
    _purge_rq(runtime, stamp - older_than, report, batch_size)
    report.kept["posts inside the dedup window"] = int(runtime.store.scalar(_KEPT_FOR_DEDUP, params) or 0)
    return report


def _prune_dedup(runtime: Runtime, report: PurgeReport) -> None:
    """The dedup index's band rows of posts that left the window (workers that ingest also do it hourly)."""
    from contentq.content.dedup import DedupIndex  # numpy: only when purging

    settings = runtime.settings
    index = DedupIndex(settings.near_duplicate_threshold, settings.dedup_window_days)
    with runtime.store.transaction() as conn:
        report.add("dedup band rows", index.prune(conn, dry_run=report.dry_run))


def _purge_jobs(
    runtime: Runtime,
    params: dict[str, str],
    report: PurgeReport,
    batch_size: int,
    progress: Callable[[str, int], None] | None,
) -> None:
    store = runtime.store
    if report.dry_run:
        report.add("job records", int(store.scalar("SELECT COUNT(*) " + _OLD_JOBS, params) or 0))
        report.add(
            "job events",
            int(
                store.scalar(f"SELECT COUNT(*) FROM job_events WHERE job_id IN (SELECT j.id {_OLD_JOBS})", params) or 0
            ),
        )
        return
    while True:
        with store.transaction() as conn:
            ids = [r[0] for r in conn.execute(f"SELECT j.id {_OLD_JOBS} LIMIT {int(batch_size)}", params)]
            if not ids:
                return
            marks = _placeholders(ids)
            events = conn.execute(f"DELETE FROM job_events WHERE job_id IN ({marks})", ids).rowcount
            jobs = conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids).rowcount
        report.add("job records", jobs)
        report.add("job events", events)
        if progress:
            progress("job records", jobs)
        time.sleep(0)  # let a waiting writer in between batches


def _purge_posts(
    runtime: Runtime,
    params: dict[str, str],
    report: PurgeReport,
    batch_size: int,
    progress: Callable[[str, int], None] | None,
) -> None:
    store = runtime.store
    media_dir = runtime.settings.media_dir
    if report.dry_run:
        report.add("posts", int(store.scalar("SELECT COUNT(*) " + _OLD_POSTS, params) or 0))
        media = store.query(f"SELECT path, size FROM media WHERE post_id IN (SELECT p.id {_OLD_POSTS})", params)
        report.add("media rows", len(media))
        doomed = {m["path"]: m["size"] or 0 for m in media if m["path"]}
        for path, size in doomed.items():
            if not _shared_outside(store, path, params) and (media_dir / path).exists():
                report.add("media files", 1)
                report.add("media bytes", int(size))
        report.add(
            "send records",
            int(store.scalar(f"SELECT COUNT(*) FROM sends WHERE post_id IN (SELECT p.id {_OLD_POSTS})", params) or 0),
        )
        return
    while True:
        with store.transaction() as conn:
            ids = [r[0] for r in conn.execute(f"SELECT p.id {_OLD_POSTS} LIMIT {int(batch_size)}", params)]
            if not ids:
                return
            marks = _placeholders(ids)
            paths = [
                r[0] for r in conn.execute(f"SELECT DISTINCT path FROM media WHERE post_id IN ({marks})", ids) if r[0]
            ]
            media_rows = conn.execute(f"DELETE FROM media WHERE post_id IN ({marks})", ids).rowcount
            sends = conn.execute(f"DELETE FROM sends WHERE post_id IN ({marks})", ids).rowcount
            posts = conn.execute(f"DELETE FROM posts WHERE id IN ({marks})", ids).rowcount
            # Files are content-addressed: one still named by a remaining row stays. Unlinking while the
            # write lock is held means no new row can start to use the file meanwhile.
            files, size = 0, 0
            for path in paths:
                if conn.execute("SELECT 1 FROM media WHERE path = ? LIMIT 1", (path,)).fetchone():
                    continue
                target = media_dir / path
                try:
                    size += target.stat().st_size
                    target.unlink()
                    files += 1
                except FileNotFoundError:
                    pass
        report.add("posts", posts)
        report.add("media rows", media_rows)
        report.add("send records", sends)
        report.add("media files", files)
        report.add("media bytes", size)
        if progress:
            progress("posts", posts)
        time.sleep(0)


def _shared_outside(store: Any, path: str, params: dict[str, str]) -> int:
    """Rows that name this file and are not going to be purged."""
    return int(
        store.scalar(
            f"SELECT COUNT(*) FROM media WHERE path = :path AND (post_id IS NULL OR post_id NOT IN"
            f" (SELECT p.id {_OLD_POSTS}))",
            {**params, "path": path},
        )
        or 0
    )


def _purge_by_time(
    runtime: Runtime, params: dict[str, str], report: PurgeReport, batch_size: int, what: str, table: str, column: str
) -> None:
    """Rows of `table` stamped (`column`) before the cutoff, in batches. Post change records go by their own
    time: those of purged posts are older than the cutoff too, and the web feed only needs recent ones."""
    store = runtime.store
    old = f"FROM {table} WHERE {column} < :cutoff"
    if report.dry_run:
        report.add(what, int(store.scalar(f"SELECT COUNT(*) {old}", params) or 0))
        return
    while True:
        with store.transaction() as conn:
            n = conn.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid {old} LIMIT {int(batch_size)})", params
            ).rowcount
        report.add(what, n)
        if n < batch_size:
            return


def find_images_pruner() -> Callable[..., Any] | None:
    """The images area's `prune_images(runtime, older_than, dry_run)`; None when it is not installed."""
    try:
        from contentq.images.store import prune_images
    except ImportError:
        return None
    return prune_images


def _prune_images(runtime: Runtime, older_than: timedelta, report: PurgeReport) -> None:
    pruner = find_images_pruner()
    if pruner is None:
        report.notes.append("unattached images: the images pruner is not installed; nothing pruned")
        return
    accepted = inspect.signature(pruner).parameters
    kwargs: dict[str, Any] = {}
    for name, value in (("older_than", older_than), ("dry_run", report.dry_run)):
        if name in accepted:
            kwargs[name] = value
    result = pruner(runtime, **kwargs)
    report.add("unattached images", _count(result))
    if isinstance(result, dict):
        orphans = result.get("orphan_files")
        if isinstance(orphans, list):
            report.add("orphan media files", len(orphans))
        if isinstance(result.get("bytes"), int):
            report.add("media bytes", int(result["bytes"]))


def _count(result: Any) -> int:
    """The pruner may return a count, a list of what it removed, or a dict of counts."""
    if isinstance(result, bool) or result is None:
        return 0
    if isinstance(result, int):
        return result
    if isinstance(result, dict):
        for key in ("deleted", "removed", "images", "count", "files"):
            if isinstance(result.get(key), int):
                return int(result[key])
            if isinstance(result.get(key), list):
                return len(result[key])
        return 0
    if isinstance(result, (list, tuple, set)):
        return len(result)
    for attr in ("deleted", "removed", "count"):
        value = getattr(result, attr, None)
        if isinstance(value, int):
            return value
        if isinstance(value, (list, tuple)):
            return len(value)
    return 0


def _ended_at(job: Job) -> datetime | None:
    ended = job.ended_at
    if ended is None:
        return None
    return ended if ended.tzinfo else ended.replace(tzinfo=UTC)


def _purge_rq(runtime: Runtime, cutoff: datetime, report: PurgeReport, batch_size: int) -> None:
    try:
        conn = runtime.redis
        removed = 0
        for queue in QUEUES:
            for registry_class in (FinishedJobRegistry, FailedJobRegistry, CanceledJobRegistry):
                registry = registry_class(queue, connection=conn)
                if not report.dry_run:
                    registry.cleanup()  # entries whose TTL ran out
                ids = registry.get_job_ids(cleanup=False)
                for start in range(0, len(ids), batch_size):
                    chunk = ids[start : start + batch_size]
                    jobs = Job.fetch_many(chunk, connection=conn)
                    for job_id, job in zip(chunk, jobs, strict=True):
                        if job is None:
                            if not report.dry_run:
                                registry.remove(job_id)
                            removed += 1
                            continue
                        ended = _ended_at(job)
                        if ended is not None and ended < cutoff:
                            if not report.dry_run:
                                job.delete(remove_from_queue=False)
                            removed += 1
        report.add("RQ registry entries", removed)
    except redis.RedisError as exc:
        report.notes.append(f"RQ registries not purged: Redis is unavailable ({exc})")
