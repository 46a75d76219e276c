"""The one enqueue path: a SQLite job record first, then the RQ job with a deterministic id, Retry and timeout.

Job ids are `<kind>-<key>` (`publish-42`, `collect-donor`); a later run of the same (kind, key) after the
previous one ended gets `-2`, `-3` …. The RQ job id adds the generation (`publish-42-g1`): a reschedule,
a manual retry or a reconcile makes a new generation, and a stale generation that still runs finds
that it is no longer current and does nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sqlite3
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import redis
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from contentq.clock import MAX_DURATION, iso, now
from contentq.errors import ConflictError, ContentqError, RedisUnavailableError
from contentq.runtime.kinds import get_kind
from contentq.runtime.stopping import run_in_flight
from contentq.store.jobs import ACTIVE, active_for_key, add_event, get_job, insert_unless_active

if TYPE_CHECKING:
    from contentq.settings import Settings
    from contentq.store import Store


class Runtime(Protocol):
    """What enqueueing needs of contentq.runtime.context.Runtime, which imports this module (JobContext's
    enqueue_child): a Protocol here keeps the two modules out of an import circle."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def redis(self) -> redis.Redis: ...


log = logging.getLogger("contentq.jobs")

EXECUTE = "contentq.runtime.execute.run_tracked"

ENQUEUE_TRIES = 20
"""Rounds of insert-or-read when other processes keep enqueuing and finishing the same (kind, key)."""


def slug(key: str) -> str:
    """RQ accepts only letters, digits, '_' and '-' in job ids."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", key).strip("_")
    return cleaned[:80] or "job"


def _delay_seconds(delay: timedelta | float | None) -> float:
    if delay is None:
        return 0.0
    return delay.total_seconds() if isinstance(delay, timedelta) else float(delay)


def enqueue(
    runtime: Runtime,
    kind: str,
    key: str,
    payload: dict[str, Any] | None = None,
    *,
    post_id: int | None = None,
    parent_id: str | None = None,
    delay: timedelta | float | None = None,
    queue: str | None = None,
    handler: str | None = None,
) -> dict[str, Any]:
    """Record and enqueue a job; while a job of the same (kind, key) is queued or running, return that one."""
    spec = get_kind(kind)
    queue_name = queue or spec.queue
    if spec.name == "call" and not handler:
        raise ContentqError("a 'call' job needs a handler (a dotted path such as 'package.module:function')")
    policy = runtime.settings.policy(queue_name)
    policy.retry_intervals()  # everything push() needs is checked before a record exists: no orphan `queued` row
    seconds = _delay_seconds(delay)
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ContentqError(f"cannot enqueue {kind} {key!r}: a delay of {seconds} s is out of range")
    store = runtime.store
    base = f"{kind}-{slug(key)}"
    stamp = iso()
    row: dict[str, Any] = {
        "kind": kind,
        "queue": queue_name,
        "key": key,
        "status": "queued",
        "handler": handler,
        "payload": json.dumps(payload or {}, default=str),
        "post_id": post_id,
        "parent_id": parent_id,
        "generation": 1,
        "max_attempts": policy.attempts,
        "next_retry_at": iso(now() + timedelta(seconds=seconds)) if seconds else None,
        "created_at": stamp,
        "enqueued_at": stamp,
        "updated_at": stamp,
    }
    skip = 0
    for _ in range(ENQUEUE_TRIES):
        while True:
            try:
                job_id = insert_unless_active(store, row, base, skip)
                break
            except sqlite3.IntegrityError as exc:
                if "jobs.id" not in str(exc):
                    raise
                # Different keys can share a slug ('a.b' and 'a_b', or 'a' run twice and 'a-2'): never reuse an
                # id. The usual insert finds its id free.
                skip += 1
        if job_id is not None:
            row = {"id": job_id, "rq_id": f"{job_id}-g1", **row}
            push(runtime, row, seconds)
            return row
        active = active_for_key(store, kind, key)
        if active is not None:
            return {**active, "deduplicated": True}
        # The active job ended between the insert and this read: try again.
    raise ContentqError(f"cannot enqueue {kind} {key!r}: its jobs kept changing under {ENQUEUE_TRIES} tries")


SCHEDULED_CHANNEL = "contentq:scheduled"
"""A delayed job was added to a queue's scheduled registry (the message is the queue's name): the workers'
schedulers, which otherwise sleep until the next job they know of is due, look again."""


def push(
    runtime: Runtime,
    row: dict[str, Any],
    delay_seconds: float = 0.0,
    retries: int | None = None,
    at_front: bool = False,
) -> Job:
    """Create the RQ job for the record's current generation; `retries` caps RQ's retries (what a job whose
    worker died has left), else the queue's policy gives them all."""
    policy = runtime.settings.policy(row["queue"])
    intervals = policy.retry_intervals()
    if retries is not None:
        intervals = intervals[len(intervals) - retries :] if retries > 0 else []
    try:
        queue = Queue(row["queue"], connection=runtime.redis)
        options: dict[str, Any] = {
            "job_id": row["rq_id"],
            "job_timeout": policy.timeout,
            "result_ttl": runtime.settings.job_result_ttl,
            "failure_ttl": runtime.settings.job_failure_ttl,
            "description": f"{row['kind']} {row['key']}",
            "retry": Retry(max=len(intervals), interval=intervals) if intervals else None,
        }
        if delay_seconds > 0:
            job = queue.enqueue_in(timedelta(seconds=delay_seconds), EXECUTE, row["id"], **options)
            runtime.redis.publish(SCHEDULED_CHANNEL, row["queue"])
            return job
        return queue.enqueue(EXECUTE, row["id"], at_front=at_front, **options)
    except redis.RedisError as exc:
        raise RedisUnavailableError(
            f"job {row['id']} is recorded but Redis refused it ({exc}); "
            "once Redis is back, `contentq queue reconcile` enqueues it"
        ) from None


def new_generation(
    runtime: Runtime,
    job_id: str,
    *,
    event: str,
    reason: str,
    delay_seconds: float = 0.0,
    expect: tuple[str, ...] | None = None,
    expect_rq_id: str | None = None,
    retries: int | None = None,
    at_front: bool = False,
    expect_run: tuple[int, str | None] | None = None,
) -> dict[str, Any] | None:
    """Queue the job again under a new RQ id (reschedule, retry, reconcile); None if the CAS lost.
    `expect_run` (attempts, worker) pins the run: an RQ retry keeps the rq_id, so only these tell it apart."""
    with runtime.store.transaction() as conn:
        cursor = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        columns = [c[0] for c in cursor.description]
        found = cursor.fetchone()
        if found is None:
            return None
        row = dict(zip(columns, found, strict=True))
        if expect is not None and row["status"] not in expect:
            return None
        if expect_rq_id is not None and row["rq_id"] != expect_rq_id:
            return None
        if expect_run is not None and (row["attempts"], row["worker"]) != expect_run:
            return None
        generation = row["generation"] + 1
        stamp = iso()
        row.update(
            status="queued",
            generation=generation,
            rq_id=f"{job_id}-g{generation}",
            next_retry_at=iso(now() + timedelta(seconds=delay_seconds)) if delay_seconds else None,
            retry_reason=reason,
            finished_at=None,
            enqueued_at=stamp,
            updated_at=stamp,
        )
        conn.execute(
            "UPDATE jobs SET status = 'queued', generation = ?, rq_id = ?, next_retry_at = ?, retry_reason = ?,"
            " finished_at = NULL, enqueued_at = ?, updated_at = ? WHERE id = ?",
            (generation, row["rq_id"], row["next_retry_at"], reason, stamp, stamp, job_id),
        )
        add_event(conn, job_id, event, reason, data={"generation": generation, "delay_s": round(delay_seconds, 1)})
    push(runtime, row, delay_seconds, retries, at_front)
    return row


def tries_left(row: dict[str, Any]) -> int:
    """Tries a job still has: every start counts, except the runs that ended in a reschedule (a wait)."""
    used = int(row["attempts"]) - int(row.get("reschedules") or 0)
    return max(0, int(row["max_attempts"]) - used)


def retry(runtime: Runtime, job_id: str) -> dict[str, Any]:
    """Run a failed or cancelled job again (a new generation with fresh retries), or a waiting one now (a job
    rescheduled or retrying later: its wait is cut short, tries as they were); refused (ConflictError) while
    the run that was cancelled has not stopped yet."""
    row = get_job(runtime.store, job_id)
    if row["status"] == "queued" and row["next_retry_at"]:
        return _try_now(runtime, row)
    if row["status"] == "queued":
        raise ContentqError(f"job {job_id} is queued and runs as soon as a worker of queue {row['queue']} is free")
    if row["status"] in ACTIVE:
        raise ContentqError(f"job {job_id} is running; retry it once it has ended (or cancel it first)")
    if row["status"] == "succeeded":
        raise ContentqError(f"job {job_id} succeeded; there is nothing to retry")
    holder = run_in_flight(runtime, job_id) if row["status"] == "cancelled" else None
    if holder is not None:
        raise ConflictError(
            f"job {job_id} was cancelled while it ran, and that run on worker {holder} has not stopped yet (it"
            f" stops at its next safe point); retry once `contentq jobs logs {job_id}` shows it 'stopped' or"
            " 'discarded'"
        )
    # Fresh tries: the attempts made so far stay on the record (its history), so the budget grows past them.
    fresh = runtime.settings.policy(row["queue"]).attempts
    runtime.store.execute(
        "UPDATE jobs SET max_attempts = attempts - reschedules + ? WHERE id = ? AND status IN ('failed', 'cancelled')",
        (fresh, job_id),
    )
    done = new_generation(
        runtime, job_id, event="restarted", reason=f"restarted by the operator (was {row['status']})",
        expect=("failed", "cancelled"),
    )  # fmt: skip
    if done is None:
        raise ContentqError(f"job {job_id} changed while retrying it; look at `contentq jobs show {job_id}`")
    return done


def _try_now(runtime: Runtime, row: dict[str, Any]) -> dict[str, Any]:
    """A waiting job queued again to run at once (event 'tried_now': a job may skip a wait that is not over,
    such as an open circuit breaker's cool-down, see JobContext.tried_now); its delayed RQ job is dropped."""
    was = row["retry_reason"] or "waiting"
    done = new_generation(
        runtime, row["id"], event="tried_now", reason=f"tried now by the operator (was waiting: {was})"[:500],
        expect=("queued",), expect_rq_id=row["rq_id"], retries=max(0, tries_left(row) - 1), at_front=True,
    )  # fmt: skip
    if done is None:
        raise ContentqError(f"job {row['id']} changed while retrying it; look at `contentq jobs show {row['id']}`")
    with contextlib.suppress(NoSuchJobError, InvalidJobOperation, redis.RedisError):
        Job.fetch(row["rq_id"], connection=runtime.redis).cancel()  # the stale delayed run would only be skipped
    return done


def cancel(runtime: Runtime, job_id: str) -> dict[str, Any]:
    """Cancel a queued or running job. A queued one never runs; a running one is told to stop (RQ's stop-job
    command) and stops at its next safe point (`contentq.runtime.stopping`): until then a retry is refused."""
    row = get_job(runtime.store, job_id)
    if row["status"] not in ACTIVE:
        raise ContentqError(f"job {job_id} is already {row['status']}")
    running = row["status"] == "in_progress"
    with runtime.store.transaction() as conn:
        cursor = conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ? WHERE id = ? AND status = ?",
            (iso(), iso(), job_id, row["status"]),
        )
        if cursor.rowcount != 1:
            raise ContentqError(f"job {job_id} changed while cancelling it; try again")
        how = "; the run stops at its next safe point" if running else ""
        add_event(conn, job_id, "cancelled", f"cancelled by the operator while {row['status']}{how}")
    if running:
        _send_stop(runtime, row)
    else:
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(row["rq_id"], connection=runtime.redis).cancel()
    return {**get_job(runtime.store, job_id), "stopping": running}


def _send_stop(runtime: Runtime, row: dict[str, Any]) -> None:
    """RQ's stop-job command to the worker running the job: it stops the job at its next safe point at once.
    Without it (the RQ job gone, Redis down) the job still stops there: its record is cancelled."""
    try:
        send_stop_job_command(runtime.redis, row["rq_id"])
    except (NoSuchJobError, InvalidJobOperation, redis.RedisError, RedisUnavailableError) as exc:
        log.info("job %s: stop-job not sent (%s); it stops by its record", row["id"], exc)
