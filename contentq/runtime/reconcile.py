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
from contentq.runtime.liveness import forget_dead_registrations
from contentq.runtime.stopping import run_in_flight
from contentq.runtime.tracking import new_generation, tries_left
from contentq.store.deliveries import stranded_deliveries
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
                expect_run=(row["attempts"], row["worker"]),
            )  # fmt: skip
            if done is None:
                return None
            log.warning("job %s: worker %s died during %s; re-enqueued", row["id"], worker, attempt)
        return {"job": row["id"], "found": found, "action": action if not dry_run else f"would be {action}"}
    reason = f"abandoned: worker {worker} died during the last attempt ({attempt})"
    if not dry_run:
        with runtime.store.transaction() as conn:
            # The run read above, not just the RQ job: an RQ retry keeps the rq_id, and it may have started on
            # another worker since (attempts and worker then differ).
            cursor = conn.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, updated_at = ?"
                " WHERE id = ? AND status = 'in_progress' AND rq_id = ? AND attempts = ? AND worker IS ?",
                (reason, iso(), iso(), row["id"], row["rq_id"], row["attempts"], row["worker"]),
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
    # Take the write lock once before judging: should the database be held by another process, this waits here
    # (and the end of that wait dates every worker's beat afresh, see store/workers.py grace_after_stall) rather
    # than at the first re-enqueue, which would then act on beats read while no worker could write one.
    with runtime.store.transaction():
        pass
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


UNSETTLED = {
    # post state: (kinds whose end must have moved it, the job statuses that leave it stranded)
    "publishing": (("publish", "settle"), ("failed", "cancelled")),
    "rewriting": (("rewrite", "generate"), ("failed", "cancelled")),
    "collected": (("rewrite",), ("failed",)),  # a rewrite that waited or retried puts it back to collected
    "rewritten": (("imagegen",), ("failed",)),  # waiting for its image: it goes on without it (or fails)
}
"""In-flight post states, the jobs that move a post out of each, and which ends of them settle nothing by
themselves. A queued job cancelled by the operator leaves a collected or rewritten post as it is: that is a
choice, not a crash; a cancelled job that had moved the post on (publishing, rewriting) is settled."""


def _unsettled_sql() -> tuple[str, list[str]]:
    clauses, params = [], []
    for state, (kinds, _) in UNSETTLED.items():
        clauses.append(f"(p.state = ? AND j.kind IN ({', '.join('?' for _ in kinds)}))")
        params += [state, *kinds]
    sql = (
        "SELECT * FROM (SELECT j.*, p.state AS post_state, p.updated_at AS post_updated_at, ROW_NUMBER() OVER"
        " (PARTITION BY j.post_id ORDER BY COALESCE(j.enqueued_at, j.created_at) DESC, j.rowid DESC) AS newest"
        f" FROM posts AS p JOIN jobs AS j ON j.post_id = p.id WHERE {' OR '.join(clauses)})"
        " WHERE newest = 1 AND status IN ('failed', 'cancelled') AND finished_at >= post_updated_at"
        " ORDER BY post_id"
    )
    return sql, params


def settle_stranded_posts(runtime: Runtime, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Posts left in flight by a job that ended without settling them: the process died between committing
    the job's end and running its kind's `on_failed` hook (or the job was cancelled while it ran). The same
    hook runs now: a settle job for a publish, the post failed (and the admin told) for a rewrite. Each hook
    is idempotent (a compare-and-set on the post, a deduplicated enqueue), and once it ran the post has moved
    or its newest job is the settle job, so a second pass finds nothing.

    Only a job that ended after the post's last change counts: a post moved since (a publish run from the
    CLI, with no job) is someone else's."""
    actions: list[dict[str, Any]] = []
    sql, params = _unsettled_sql()
    for row in runtime.store.query(sql, params):
        state, status = row["post_state"], row["status"]
        if status not in UNSETTLED[state][1]:
            continue
        if status == "cancelled" and run_in_flight(runtime, row["id"]) is not None:
            continue  # cancelled but still running to its next safe point: the run settles the post itself
        ended = "failed" if status == "failed" else "was cancelled"
        reason = (row["error"] if status == "failed" else None) or f"job {row['id']} {ended}"
        found = f"post {row['post_id']} is {state}, but its {row['kind']} job ended {status} without settling it"
        action = "its post settled"
        if not dry_run:
            log.warning("job %s: %s; settling it now", row["id"], found)
            settle_failed_job(runtime, row, reason)
        actions.append({"job": row["id"], "found": found, "action": action if not dry_run else f"would be {action}"})
    return actions


def settle_stranded_deliveries(runtime: Runtime, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Deliveries left `publishing` by a deliver job that ended without settling them (its process died between
    the two): its kind's hook runs now (a settle_delivery job looks at the destination). Idempotent."""
    actions: list[dict[str, Any]] = []
    for row in stranded_deliveries(runtime.store):
        if row["status"] == "cancelled" and run_in_flight(runtime, row["id"]) is not None:
            continue
        found = f"delivery {row['delivery_id']} is publishing, but its deliver job ended {row['status']}"
        if not dry_run:
            log.warning("job %s: %s; settling it now", row["id"], found)
            settle_failed_job(runtime, row, row["error"] or f"job {row['id']} {row['status']}")
        action = "its delivery settled"
        actions.append({"job": row["id"], "found": found, "action": action if not dry_run else f"would be {action}"})
    return actions


def reconcile(runtime: Runtime, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Returns one entry per job acted on: id, what was found, what was done. RQ's registrations of dead
    workers are removed too (they would be listed for 8 minutes more)."""
    actions = recover_abandoned(runtime, dry_run=dry_run)
    if not dry_run:
        forget_dead_registrations(runtime)
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
                # The later of RQ's start and the record's last change: a try that just ended "retrying" is
                # queued in SQLite while RQ has not yet moved it out of started.
                since = max(iso(rq_job.started_at) if rq_job.started_at else "", row["enqueued_at"] or "",
                            row["updated_at"] or "")  # fmt: skip
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
    return (
        actions + settle_stranded_posts(runtime, dry_run=dry_run) + settle_stranded_deliveries(runtime, dry_run=dry_run)
    )
