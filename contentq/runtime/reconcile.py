"""Re-create in Redis what SQLite says should be there: SQLite is the truth, Redis the transport.

Abandoned jobs are found by contentq's own liveness data (the worker recorded on the job and its heartbeat
in the `workers` table), never by RQ's registries or locks: a job whose worker is dead is re-enqueued as a
new generation while it has tries left, else failed, and its post settled. Both `contentq queue reconcile`
and every live worker (about once a minute, taking turns) run this.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import Queue

from contentq.clock import iso, now, parse
from contentq.runtime.context import Runtime
from contentq.runtime.execute import settle_failed_job
from contentq.runtime.tracking import new_generation, tries_left
from contentq.store.jobs import add_event
from contentq.store.workers import worker_state

log = logging.getLogger("contentq.reconcile")


def lost_after_seconds(runtime: Runtime) -> float:
    """A job Redis calls queued but that sits in no queue list for this long was lost between pop and start
    (the window between the two is milliseconds; a worker's heartbeat TTL is ample)."""
    return float(runtime.settings.worker_heartbeat_ttl)


def _in_queue(runtime: Runtime, queue_name: str, rq_id: str) -> bool:
    queue = Queue(queue_name, connection=runtime.redis)
    conn = runtime.redis
    if conn.lpos(queue.key, rq_id) is not None:
        return True
    return conn.lpos(queue.intermediate_queue_key, rq_id) is not None


def _surely_dead(runtime: Runtime, row: dict[str, Any], stamp: datetime) -> bool:
    """Without liveness data (no worker recorded): the attempt is over when it started longer ago than its
    queue's timeout allows."""
    started = parse(row["started_at"] or row["updated_at"])
    limit = runtime.settings.policy(row["queue"]).timeout + runtime.settings.worker_heartbeat_ttl + 60
    return (stamp - started).total_seconds() > limit


def _holder_gone(runtime: Runtime, worker: str | None, job_id: str, since: str | None, stamp: datetime) -> bool | None:
    """Whether the worker that holds `job_id` is gone: dead, or alive but busy with something else for longer
    than a heartbeat (it moved on without recording the job's end). None when contentq knows no such worker."""
    ttl = runtime.settings.worker_heartbeat_ttl
    state, wrow = worker_state(runtime.store, worker, ttl)
    if state == "unknown" or wrow is None:
        return None
    if state == "dead":
        return True
    if wrow["current_job"] == job_id:
        return False
    started = parse(since) if since else stamp
    return (stamp - started).total_seconds() > ttl


def _abandoned(runtime: Runtime, row: dict[str, Any], dry_run: bool) -> dict[str, Any] | None:
    """A running job whose worker is gone: a new generation while tries are left (at the front of its queue: it
    was due already), else failed and settled."""
    left = tries_left(row)
    worker = row["worker"] or "an unknown worker"
    attempt = f"attempt {row['attempts']} of {row['max_attempts']}"
    found = f"in progress, but its worker {worker} is gone ({attempt})"
    if left > 0:
        action = f"re-enqueued ({left} tries left)"
        if not dry_run:
            done = new_generation(
                runtime, row["id"], event="abandoned", reason=f"worker {worker} died during {attempt}; re-enqueued",
                expect=("in_progress",), expect_rq_id=row["rq_id"], retries=left - 1, at_front=True,
            )  # fmt: skip
            if done is None:
                return None
            log.warning("job %s: worker %s died during %s; re-enqueued", row["id"], worker, attempt)
        return {"job": row["id"], "found": found, "action": action if not dry_run else f"would be {action}"}
    reason = f"abandoned: worker {worker} died during the last attempt ({attempt})"
    if not dry_run:
        with runtime.store.transaction() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, updated_at = ?"
                " WHERE id = ? AND status = 'in_progress' AND rq_id = ?",
                (reason, iso(), iso(), row["id"], row["rq_id"]),
            )
            if not cursor.rowcount:
                return None
            add_event(conn, row["id"], "failed", reason, level="error")
        log.warning("job %s: %s", row["id"], reason)
        settle_failed_job(runtime, row, reason)
    action = "marked failed, its post settled"
    return {"job": row["id"], "found": found, "action": action if not dry_run else f"would be {action}"}


def recover_abandoned(runtime: Runtime, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """The running jobs whose worker is gone, from SQLite alone (cheap: live workers run it every few seconds)."""
    actions: list[dict[str, Any]] = []
    stamp = now()
    for row in runtime.store.query("SELECT * FROM jobs WHERE status = 'in_progress' ORDER BY created_at"):
        gone = _holder_gone(runtime, row["worker"], row["id"], row["started_at"], stamp)
        if gone is None:
            gone = _surely_dead(runtime, row, stamp)
        if gone:  # else a live worker runs it, whatever Redis says about the RQ job
            acted = _abandoned(runtime, row, dry_run)
            if acted is not None:
                actions.append(acted)
    return actions


def reconcile(runtime: Runtime, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Returns one entry per job acted on: id, what was found, what was done."""
    actions = recover_abandoned(runtime, dry_run=dry_run)
    rows = runtime.store.query("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at")
    stamp = now()
    for row in rows:
        try:
            rq_job: Job | None = Job.fetch(row["rq_id"], connection=runtime.redis)
        except NoSuchJobError:
            rq_job = None
        if rq_job is None:
            found = "missing from Redis"
        else:
            status = rq_job.get_status(refresh=False)
            if status in (JobStatus.SCHEDULED, JobStatus.DEFERRED):
                continue
            if status == JobStatus.STARTED:
                # Popped and marked started by a worker that never began it (run_tracked records the start).
                since = iso(rq_job.started_at) if rq_job.started_at else row["enqueued_at"]
                if not _holder_gone(runtime, rq_job.worker_name, row["id"], since, stamp):
                    continue
                found = f"started in Redis by worker {rq_job.worker_name}, which is gone, but never begun"
            elif status == JobStatus.QUEUED:
                age = (stamp - parse(row["enqueued_at"] or row["created_at"])).total_seconds()
                if age < lost_after_seconds(runtime) or _in_queue(runtime, row["queue"], row["rq_id"]):
                    continue
                found = "queued in Redis but in no queue (lost between pop and start)"
            else:
                found = f"{status} in Redis but {row['status']} in SQLite"
        delay = 0.0
        if row["next_retry_at"]:
            delay = max(0.0, (parse(row["next_retry_at"]) - stamp).total_seconds())
        action = "re-enqueued" + (f" to run in {delay:.0f} s" if delay else "")
        if not dry_run:
            done = new_generation(
                runtime, row["id"], event="reconciled", reason=f"{found}; {action}", delay_seconds=delay,
                expect=("queued",), expect_rq_id=row["rq_id"], retries=max(0, tries_left(row) - 1),
            )  # fmt: skip
            if done is None:
                continue
            log.warning("job %s: %s; %s", row["id"], found, action)
        actions.append({"job": row["id"], "found": found, "action": action if not dry_run else f"would be {action}"})
    return actions
