"""Re-create in Redis what SQLite says should be there: SQLite is the truth, Redis the transport."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import Queue

from contentq.clock import iso, now, parse
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import new_generation
from contentq.store.jobs import add_event

LOST_AFTER_SECONDS = 30
"""A job Redis calls queued but that sits in no queue list for this long was lost between pop and start."""


def _in_queue(runtime: Runtime, queue_name: str, rq_id: str) -> bool:
    queue = Queue(queue_name, connection=runtime.redis)
    conn = runtime.redis
    if conn.lpos(queue.key, rq_id) is not None:
        return True
    return conn.lpos(queue.intermediate_queue_key, rq_id) is not None


def _surely_dead(runtime: Runtime, row: dict[str, Any], stamp: datetime) -> bool:
    """A running job's attempt is over when it started longer ago than its queue's timeout allows."""
    started = parse(row["started_at"] or row["updated_at"])
    limit = runtime.settings.policy(row["queue"]).timeout + runtime.settings.worker_heartbeat_ttl + 60
    return (stamp - started).total_seconds() > limit


def reconcile(runtime: Runtime, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Returns one entry per job acted on: id, what was found, what was done."""
    actions: list[dict[str, Any]] = []
    rows = runtime.store.query("SELECT * FROM jobs WHERE status IN ('queued', 'in_progress') ORDER BY created_at")
    stamp = now()
    for row in rows:
        try:
            rq_job: Job | None = Job.fetch(row["rq_id"], connection=runtime.redis)
        except NoSuchJobError:
            rq_job = None
        expect: tuple[str, ...] = ("queued", "in_progress")
        if rq_job is None:
            found = "missing from Redis"
            if row["status"] == "in_progress" and not _surely_dead(runtime, row, stamp):
                continue  # its worker may still be running it (Redis lost the job, not the worker)
        else:
            status = rq_job.get_status(refresh=False)
            if status in (JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED):
                continue
            if status == JobStatus.QUEUED:
                age = (stamp - parse(row["enqueued_at"] or row["created_at"])).total_seconds()
                if age < LOST_AFTER_SECONDS or _in_queue(runtime, row["queue"], row["rq_id"]):
                    continue
                found = "queued in Redis but in no queue (lost between pop and start)"
                expect = ("queued",)  # once a worker started it, it is no longer lost
            elif status == JobStatus.FAILED and row["status"] == "in_progress":
                found = "failed in Redis (its worker died and no retries were left)"
                if not dry_run:
                    with runtime.store.transaction() as conn:
                        cursor = conn.execute(
                            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, updated_at = ?"
                            " WHERE id = ? AND status = 'in_progress' AND rq_id = ?",
                            ("abandoned: the worker died during the last attempt", iso(), iso(), row["id"],
                             row["rq_id"]),
                        )  # fmt: skip
                        if cursor.rowcount:
                            add_event(conn, row["id"], "failed", "abandoned: the worker died", level="error")
                actions.append({"job": row["id"], "found": found, "action": "marked failed"})
                continue
            else:
                found = f"{status} in Redis but {row['status']} in SQLite"
        delay = 0.0
        if row["next_retry_at"]:
            delay = max(0.0, (parse(row["next_retry_at"]) - stamp).total_seconds())
        action = "re-enqueued" + (f" to run in {delay:.0f} s" if delay else "")
        if not dry_run:
            done = new_generation(
                runtime, row["id"], event="reconciled", reason=f"{found}; {action}", delay_seconds=delay,
                expect=expect, expect_rq_id=row["rq_id"],
            )  # fmt: skip
            if done is None:
                continue
        actions.append({"job": row["id"], "found": found, "action": action if not dry_run else f"would be {action}"})
    return actions
