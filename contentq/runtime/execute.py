"""The function every RQ job runs: load the record, run the kind's handler, record the outcome.

This is the one place job errors are mapped (see `contentq.errors`): `Reschedule` re-enqueues without using
a try, `FatalJobError` fails the job at once and settles its post, anything else (a `RetryableError`, whose
`defer` may set the wait, or any unclassified exception) uses up a try of the queue's retry policy.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any

from rq import get_current_job
from rq.job import Job

from contentq import actors
from contentq.clock import iso, now
from contentq.errors import DatabaseUnavailableError, FatalJobError, JobStopped, Reschedule, RetryableError
from contentq.redact import RedactedError, redact, redact_data
from contentq.runtime.context import JobContext, Runtime, process_runtime
from contentq.runtime.kinds import get_kind
from contentq.runtime.stopping import run_in_flight, running
from contentq.runtime.tracking import new_generation, tries_left
from contentq.store import Store
from contentq.store.jobs import add_event, log_event, trailing_events
from contentq.store.workers import release_job_in

log = logging.getLogger("contentq.jobs")

MAX_ERROR = 2000

MAX_TRACE = 16_000
"""A traceback is stored whole up to this many characters (deep ones, such as a recursion, are longer)."""


def trace_tail(text: str, limit: int = MAX_TRACE) -> str:
    """A traceback as the job's event keeps it: whole, or, when longer than `limit`, its end (the last frames
    and the error, which say what happened) from a line boundary, after its first line and a line saying how
    many were left out. Never cut inside a line."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    head = lines[:1] if lines and lines[0].startswith("Traceback") else []
    kept: list[str] = []
    size = sum(len(line) + 1 for line in head) + 60  # room for the note
    for line in reversed(lines[len(head) :]):
        if size + len(line) + 1 > limit:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:  # one huge line (an error message): its end
        return "\n".join([*head, lines[-1][-(limit - 60) :]])
    left_out = len(lines) - len(head) - len(kept)
    return "\n".join([*head, f"  … {left_out} line(s) left out …", *reversed(kept)])


@cache
def resolve_handler(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    handler: Callable[..., Any] = getattr(module, attr)
    return handler


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text)[:MAX_ERROR]


def settle_failed_job(runtime: Runtime, row: dict[str, Any], reason: str) -> None:
    """A job ended failed (an error, a timeout, its worker's death): run its kind's end-of-life hook, so the
    post it was moving is settled rather than left in a state no job will move. Never raises."""
    hook = get_kind(row["kind"]).on_failed
    if not hook:
        return
    try:
        with actors.acting_as(actors.job(row["id"])):  # the hook acts for the job, whoever noticed its end
            resolve_handler(hook)(runtime, row, reason)
    except Exception as exc:  # noqa: BLE001 - the job is failed either way; the admin must hear of the post
        log.warning("job %s: settling its post failed: %s", row["id"], _error_text(exc))
        with contextlib.suppress(Exception):
            runtime.notifier.notify(
                f"settle-failed:{row['id']}",
                f"job {row['id']} failed ({reason}) and its post {row['post_id']} could not be settled: "
                f"{_error_text(exc)}; look at `contentq posts show {row['post_id']}`",
                level="error",
            )


def defer_next_retry(rq_job: Job, seconds: float) -> None:
    """Make RQ's next retry wait `seconds` (arq's `Retry(defer=…)`), leaving the intervals of later retries as
    the queue's policy has them: RQ takes interval `len(intervals) - retries_left` (the first when short)."""
    intervals = list(rq_job.retry_intervals or [0])
    left = rq_job.retries_left or 0
    spelled_out = [intervals[max(len(intervals) - k, 0)] for k in range(left, 0, -1)]
    rq_job.retry_intervals = [math.ceil(seconds), *spelled_out[1:]]


INFRA_BACKOFF_CAP = 5.0


def run_waiting_out_the_database(store: Any, call: Callable[[], Any]) -> Any:
    """call(), run again while it ends in a busy database or a full disk (inside a transaction, where one
    statement cannot simply be tried again): the machine's trouble costs the job no try, and its timeout clock
    stops meanwhile. Safe because every handler is idempotent (compare-and-set steps, the publish ledger).
    A process that gives up on waits (the CLI: `store.wait.limit` set) lets the error through."""
    wait = store.wait
    delay = 0.5
    waited = False
    resume: Callable[[], None] | None = None
    try:
        while True:
            try:
                result = call()
            except DatabaseUnavailableError as exc:
                if wait.limit is not None:
                    raise
                wait.failed(exc.cause)
                if resume is None and wait.pause is not None:
                    resume = wait.pause()
                waited = True
                time.sleep(delay)
                delay = min(delay * 2, INFRA_BACKOFF_CAP)
                if resume is not None:  # the run again has the time that was left: a hang still times out
                    resume()
                    resume = None
                continue
            if waited:
                wait.ok()
            return result
    finally:
        if resume is not None:
            resume()


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


HOLD_SECONDS = 2.0
"""How long a run that found an earlier run of its job still going waits before it tries to start again; twice
as long after each further hold, up to HOLD_MAX_SECONDS (the job's log gets a line per hold)."""
HOLD_MAX_SECONDS = 30.0


def _not_started(runtime: Runtime, job_id: str, rq_id: str | None, worker: str | None) -> None:
    """The start statement changed nothing: this RQ job is not the record's current run (superseded, or the job
    was cancelled: running it would repeat or undo work), or it is but an earlier run of the job has not ended
    yet (a cancelled run on its way to its next safe point): then it waits, as a new generation a little later,
    without using up a try."""
    store = runtime.store
    current = store.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    if current is None:
        log.warning("job %s has no record; skipped", job_id)
        return
    if current["status"] == "queued" and rq_id is not None and current["rq_id"] == rq_id:
        holder = run_in_flight(runtime, job_id, exclude=worker)
        if holder is not None:
            delay = min(HOLD_MAX_SECONDS, HOLD_SECONDS * 2 ** trailing_events(store, job_id, "held"))
            new_generation(
                runtime, job_id, event="held", delay_seconds=delay, expect=("queued",), expect_rq_id=rq_id,
                reason=f"an earlier run of this job is still going on worker {holder} (it was cancelled and stops"
                f" at its next safe point); starting in {delay:g} s",
                retries=max(0, tries_left(current) - 1),
            )  # fmt: skip
            return
        # The holder ended meanwhile, or it was a dead worker's stale row (now released): start again at once.
        new_generation(
            runtime, job_id, event="held", expect=("queued",), expect_rq_id=rq_id,
            reason="an earlier run of this job had just ended; starting now",
            retries=max(0, tries_left(current) - 1),
        )  # fmt: skip
        return
    log_event(store, job_id, "skipped", f"RQ job {rq_id} is not current (record is {current['status']})")


def _end_stale_run(
    store: Store, job_id: str, worker: str | None, event: str, message: str, ms: float, cancel_rq_id: str = ""
) -> None:
    """A run that is no longer the job's current one has ended: its event, and its worker no longer holds the
    job (so a retry of the cancelled job may start), in one transaction. `cancel_rq_id`: the record is made
    cancelled if that run is still its current one."""
    with store.transaction() as conn:
        if cancel_rq_id:
            stamp = iso()
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ?"
                " WHERE id = ? AND status = 'in_progress' AND rq_id = ?",
                (stamp, stamp, job_id, cancel_rq_id),
            )
        add_event(conn, job_id, event, message, data={"duration_ms": round(ms, 1)})
        release_job_in(conn, worker, job_id)
    log.info("%s %s (ran %.1f ms)", job_id, event, ms, extra={"job_id": job_id, "status": event})


def run_tracked(job_id: str) -> Any:
    runtime = process_runtime()
    store = runtime.store
    rq_job = get_current_job()
    rq_id = rq_job.id if rq_job is not None else None
    worker = getattr(rq_job, "worker_name", None) if rq_job is not None else None

    # One statement starts the job: the compare-and-set on its state, the attempt, and (trigger job_started,
    # migration 61) its 'started' event; a job that is not current is the rare path, explained after.
    # No two runs of one job at once: an earlier run still going (cancelled, on its way to its next safe point)
    # holds its live worker's current_job until it has ended, and the start waits for it (`_not_started`).
    stamp = iso()
    fresh = iso(now() - timedelta(seconds=runtime.settings.worker_heartbeat_ttl))
    started_rows = store.query(
        "UPDATE jobs SET status = 'in_progress', attempts = attempts + 1, started_at = ?, worker = ?,"
        " next_retry_at = NULL, updated_at = ? WHERE id = ? AND status IN ('queued', 'in_progress')"
        " AND (? IS NULL OR rq_id = ?) AND NOT EXISTS (SELECT 1 FROM workers WHERE current_job = ?"
        " AND name IS NOT ? AND stopped_at IS NULL AND heartbeat_at >= ?) RETURNING *",
        (stamp, worker, stamp, job_id, rq_id, rq_id, job_id, worker, fresh),
    )
    if not started_rows:
        _not_started(runtime, job_id, rq_id, worker)
        return None
    row = started_rows[0]
    attempts = row["attempts"]

    spec = get_kind(row["kind"])
    handler = resolve_handler(row["handler"] or spec.handler)
    retries_left = (rq_job.retries_left or 0) if rq_job is not None else 0
    payload = json.loads(row["payload"] or "{}")
    ctx = JobContext(
        runtime=runtime,
        job_id=job_id,
        kind=row["kind"],
        queue=row["queue"],
        attempt=attempts,
        max_attempts=row["max_attempts"],
        post_id=row["post_id"],
        parent_id=row["parent_id"],
        payload=payload,
        retries_left=retries_left,
    )
    started = time.perf_counter()

    def finish(status: str, event: str, message: str, **fields: Any) -> bool:
        duration_ms = (time.perf_counter() - started) * 1000
        stamp = iso()
        # `fields` come redacted: errors through _error_text, the result at its call, the rest are numbers or times.
        values = {"status": status, "finished_at": stamp, "duration_ms": round(duration_ms, 2), **fields}
        values["updated_at"] = stamp
        assignments = ", ".join(f"{k} = ?" for k in values)
        update = f"UPDATE jobs SET {assignments} WHERE id = ? AND status = 'in_progress' AND rq_id = ?"

        def write() -> bool:
            if status == "succeeded":  # one statement: its event comes from the trigger job_succeeded (migration 61)
                done = store.execute(update, [*values.values(), job_id, row["rq_id"]]).rowcount == 1
                if not done:
                    late = f"{event} after the job was cancelled or superseded: {message}"
                    _end_stale_run(store, job_id, worker, "discarded", late, duration_ms)
                return done
            with store.transaction() as conn:
                done = conn.execute(update, [*values.values(), job_id, row["rq_id"]]).rowcount == 1
                add_event(
                    conn,
                    job_id,
                    event if done else "discarded",
                    message if done else f"{event} after the job was cancelled or superseded: {message}",
                    level="error" if status == "failed" else "info",
                    data={"duration_ms": round(duration_ms, 1)},
                )
                if not done:  # this run has ended: a retry of the cancelled job may start now
                    release_job_in(conn, worker, job_id)
            return done

        # The end's own write waits out a full disk at its COMMIT too (all or nothing, so written again safely):
        # else RQ would count the run as failed and spend a try.
        current: bool = run_waiting_out_the_database(store, write)
        level = {"failed": logging.ERROR, "retrying": logging.WARNING}.get(event, logging.INFO)
        shown = event if current else "discarded"
        # The duration is the run's: "succeeded in 12 ms", but "retrying (ran 3060.6 ms): …; retry in 2 s".
        head = "%s %s in %.1f ms" if shown == "succeeded" else "%s %s (ran %.1f ms)"
        told = level > logging.INFO or event == "rescheduling"
        log.log(
            level if current else logging.INFO,
            head + (": %s" if told else ""),
            job_id,
            shown,
            duration_ms,
            *([message.splitlines()[0] if message else ""] if told else []),
            extra={"job_id": job_id, "post_id": row["post_id"], "queue": row["queue"], "kind": row["kind"],
                   "status": status, "duration_ms": round(duration_ms, 1)},
        )  # fmt: skip
        return current

    try:
        with running(store, job_id, rq_id), actors.acting_as(actors.job(job_id)):
            # what the handler moves is recorded as this job's
            result = run_waiting_out_the_database(store, lambda: handler(ctx, **payload))
    except JobStopped as stop:
        # Cancelled, it stopped at a safe point. The record says cancelled already, unless the stop came from
        # RQ's own `rq` tools (a stop-job command sent by hand): then it says so now.
        _end_stale_run(store, job_id, worker, "stopped", f"the cancelled run stopped at a safe point ({stop})",
                       (time.perf_counter() - started) * 1000, cancel_rq_id=row["rq_id"])  # fmt: skip
        return None
    except Reschedule as outcome:
        outcome.reason = redact(outcome.reason)
        # A reschedule is not a failed try: count it apart so `jobs list` shows tries against the retry budget.
        again = f"{outcome.reason}; runs again in {_seconds(outcome.delay)}"
        if finish("in_progress", "rescheduling", again, reschedules=row["reschedules"] + 1):
            new_generation(
                runtime, job_id, event="rescheduled", reason=outcome.reason,
                delay_seconds=outcome.delay, expect=("in_progress",), expect_rq_id=row["rq_id"],
            )  # fmt: skip
        return {"rescheduled_in_s": outcome.delay, "reason": outcome.reason}
    except FatalJobError as exc:
        if finish("failed", "failed", f"fatal, not retried: {_error_text(exc)}", error=_error_text(exc)):
            # The message of a fatal error is written for a person: the post's reason gets it without the class.
            settle_failed_job(runtime, row, redact(str(exc))[:MAX_ERROR] or _error_text(exc))
        if rq_job is not None:
            rq_job.retries_left = 0  # RQ must not retry what cannot succeed
        raise RedactedError(exc, traceback.format_exc()) from None  # RQ keeps this text for days
    except Exception as exc:
        error = _error_text(exc)
        trace = trace_tail(redact(traceback.format_exc()))
        if retries_left > 0 and rq_job is not None:
            if isinstance(exc, RetryableError) and exc.defer is not None:
                defer_next_retry(rq_job, exc.defer)
            interval = rq_job.get_retry_interval()
            # The log gets one line with the reason; the traceback goes to the job's event log.
            finish(
                "queued", "retrying", f"{error}; retry in {interval} s ({retries_left} left)\n{trace}",
                error=error, retry_reason=error, next_retry_at=iso(now() + timedelta(seconds=interval)),
                finished_at=None,
            )  # fmt: skip
        elif finish("failed", "failed", f"{error}\n{trace}", error=error):
            settle_failed_job(runtime, row, error)
        raise RedactedError(exc, traceback.format_exc()) from None  # RQ keeps this text for days
    result = redact_data(result)  # stored in SQLite and, as RQ's return value, in Redis
    # The stored text is redacted again as a whole: key-based patterns ("password": "…") match only there.
    stored = redact(json.dumps(result, default=str)) if result is not None else None
    finish("succeeded", "succeeded", "", result=stored)
    return result
