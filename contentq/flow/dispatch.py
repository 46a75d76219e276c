"""`contentq dispatch` (cron, every minute): hand due posts to the publish queue, fire auto-posting rules.

A post is claimed before it is enqueued (`UPDATE posts SET dispatched_at = … WHERE dispatched_at IS NULL`),
so two dispatchers running at once enqueue it once. Posts due within the next DISPATCH_AHEAD_SECONDS are
enqueued now with a delay up to their slot: RQ's scheduler (in every worker, polling each second) moves
them to the queue on time, so a post goes out within about a second of its slot although cron runs
once a minute.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from contentq.clock import iso, now, parse
from contentq.errors import ContentqError
from contentq.flow.rules import fire_due_rules
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import cancel, enqueue
from contentq.store.jobs import ACTIVE

log = logging.getLogger("contentq.flow.dispatch")

DISPATCH_AHEAD_SECONDS = 90
"""Posts due this soon are enqueued with a delay: more than cron's minute, so a late cron run loses nothing."""

STALE_CLAIM_SECONDS = 300
"""A due post claimed this long ago with no publish job queued or running is claimed again."""


def dispatch_post(runtime: Runtime, post_id: int, *, current: datetime | None = None) -> dict[str, Any] | None:
    """Claim a scheduled post and enqueue its publish job (delayed up to its slot); None if already claimed."""
    stamp = current or now()
    with runtime.store.transaction() as conn:
        row = conn.execute(
            "SELECT scheduled_at FROM posts WHERE id = ? AND state = 'scheduled' AND dispatched_at IS NULL", (post_id,)
        ).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE posts SET dispatched_at = ? WHERE id = ?", (iso(stamp), post_id))
    due = parse(row[0]) if row[0] else stamp
    delay = max(0.0, (due - now()).total_seconds())
    try:
        job = enqueue(runtime, "publish", str(post_id), {}, post_id=post_id, delay=delay or None)
    except BaseException:
        # Not enqueued: release the claim so the next dispatch tries again (a recorded job is reconciled).
        if not runtime.store.scalar(
            "SELECT 1 FROM jobs WHERE kind = 'publish' AND post_id = ? AND created_at >= ?", (post_id, iso(stamp))
        ):
            runtime.store.execute(
                "UPDATE posts SET dispatched_at = NULL WHERE id = ? AND dispatched_at = ?", (post_id, iso(stamp))
            )
        raise
    return {"post_id": post_id, "job": job["id"], "due": iso(due), "delay_s": round(delay, 3)}


def _reclaim_stale(runtime: Runtime, stamp: datetime, limit: int | None) -> list[dict[str, Any]]:
    """Due posts claimed long ago that have no publish job queued or running: the dispatcher died between
    claim and enqueue, or the job was cancelled. A scheduled post is meant to go out (to stop one, use
    `contentq unschedule` or `contentq posts reject`)."""
    rows = runtime.store.query(
        "SELECT p.id, p.dispatched_at FROM posts p WHERE p.state = 'scheduled' AND p.dispatched_at IS NOT NULL"
        " AND p.dispatched_at < ? AND p.scheduled_at <= ? AND NOT EXISTS (SELECT 1 FROM jobs j"
        " WHERE j.kind = 'publish' AND j.key = CAST(p.id AS TEXT) AND j.status IN ('queued', 'in_progress'))"
        " LIMIT ?",
        (iso(stamp - timedelta(seconds=STALE_CLAIM_SECONDS)), iso(stamp), limit or -1),
    )
    done = []
    for row in rows:
        cursor = runtime.store.execute(
            "UPDATE posts SET dispatched_at = NULL WHERE id = ? AND dispatched_at = ?",
            (row["id"], row["dispatched_at"]),
        )
        if cursor.rowcount == 1:
            got = dispatch_post(runtime, row["id"], current=stamp)
            if got is not None:
                done.append({**got, "reclaimed": True})
    return done


def dispatch(runtime: Runtime, *, limit: int | None = None, current: datetime | None = None) -> dict[str, Any]:
    """Fire due auto-posting rules, then enqueue every post due now or within the dispatch horizon."""
    stamp = current or now()
    rules = fire_due_rules(runtime, stamp)
    horizon = stamp + timedelta(seconds=DISPATCH_AHEAD_SECONDS)
    rows = runtime.store.query(
        "SELECT id FROM posts WHERE state = 'scheduled' AND dispatched_at IS NULL AND scheduled_at <= ?"
        " ORDER BY scheduled_at, id LIMIT ?",
        (iso(horizon), limit or -1),
    )
    dispatched = []
    for row in rows:
        got = dispatch_post(runtime, row["id"], current=stamp)
        if got is not None:
            dispatched.append(got)
    dispatched.extend(_reclaim_stale(runtime, stamp, limit))
    return {
        "dispatched": dispatched,
        "now": len([d for d in dispatched if not d["delay_s"]]),
        "delayed": len([d for d in dispatched if d["delay_s"]]),
        "rules": rules,
    }


def active_publish_job(runtime: Runtime, post_id: int) -> dict[str, Any] | None:
    placeholders = ", ".join("?" for _ in ACTIVE)
    return runtime.store.one(
        f"SELECT * FROM jobs WHERE kind = 'publish' AND key = ? AND status IN ({placeholders})"
        " ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (str(post_id), *ACTIVE),
    )


def cancel_publish_job(runtime: Runtime, post_id: int) -> str | None:
    """Cancel the post's queued publish job (before a new time or a rejection); refuses while it runs."""
    job = active_publish_job(runtime, post_id)
    if job is None:
        return None
    if job["status"] == "in_progress":
        raise ContentqError(f"post {post_id} is being published right now (job {job['id']}); wait for it to finish")
    with contextlib.suppress(ContentqError):  # it finished meanwhile
        cancel(runtime, job["id"])
    runtime.store.execute("UPDATE posts SET dispatched_at = NULL WHERE id = ? AND state = 'scheduled'", (post_id,))
    return str(job["id"])
