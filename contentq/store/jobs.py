"""Job records and their event log."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Any

from contentq import actors
from contentq.clock import iso
from contentq.errors import NotFoundError
from contentq.redact import redact
from contentq.store.db import Store

ACTIVE = ("queued", "in_progress")
TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ACTIVE + TERMINAL


def add_event(
    conn: sqlite3.Connection,
    job_id: str,
    event: str,
    message: str = "",
    *,
    level: str = "info",
    data: dict[str, Any] | None = None,
) -> None:
    actor = actors.current()
    conn.execute(
        "INSERT INTO job_events (job_id, at, level, event, message, data, actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, iso(), level, event, redact(message), redact(json.dumps(data, default=str)) if data else None,
         None if actor.startswith("job:") else actor),
    )  # fmt: skip


def log_event(store: Store, job_id: str, event: str, message: str = "", **kw: Any) -> None:
    with store.transaction():
        add_event(store.conn, job_id, event, message, **kw)


def get_job(store: Store, job_id: str) -> dict[str, Any]:
    row = store.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        raise NotFoundError(f"no job {job_id!r}; `contentq jobs list` shows the jobs")
    return row


INSERT_COLUMNS = (
    "kind", "queue", "key", "status", "handler", "payload", "post_id", "parent_id", "generation", "max_attempts",
    "next_retry_at", "created_at", "enqueued_at", "updated_at",
)  # fmt: skip
"""What enqueue gives a new record; the id and RQ id are made by the statement."""

_ACTIVE_SQL = ", ".join(f"'{status}'" for status in ACTIVE)

INSERT_JOB = (
    "WITH n(number) AS (SELECT COUNT(*) + 1 + ? FROM jobs INDEXED BY jobs_key WHERE kind = ? AND key = ?),"
    " i(id) AS (SELECT CASE WHEN number = 1 THEN ? ELSE ? || '-' || number END FROM n)"
    f" INSERT INTO jobs (id, rq_id, {', '.join(INSERT_COLUMNS)})"
    f" SELECT id, id || '-g1', {', '.join('?' for _ in INSERT_COLUMNS)} FROM i"
    " WHERE NOT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_key"
    f" WHERE kind = ? AND key = ? AND status IN ({_ACTIVE_SQL})) RETURNING id"
)
"""Both reads go through the (kind, key) index: left to itself the planner may walk jobs_kind_created (kind,
created_at) and read every job of the kind on each enqueue."""


def insert_unless_active(store: Store, row: dict[str, Any], base: str, skip: int = 0) -> str | None:
    """Record a job unless a job of its (kind, key) is queued or running (then None); returns its id.

    The id is `base` for the first job of the (kind, key) and `base-N` for the N-th, N counted in the same
    statement (`skip` adds to N after an id was found taken). One statement, atomic on its own: SQLite takes
    the write lock at a write statement's first step, before its reads, so no other process enqueues the same
    key in between; the trigger job_enqueued writes the 'enqueued' event in the same implicit transaction.
    A taken id raises sqlite3.IntegrityError."""
    kind, key = row["kind"], row["key"]
    params = [skip, kind, key, base, base, *(row[c] for c in INSERT_COLUMNS), kind, key]
    # Read under the store's lock (query, not execute): a RETURNING statement ends, and commits, only when its
    # rows are read, and another thread on this connection must not run in between.
    found = store.query(INSERT_JOB, params)
    return str(found[0]["id"]) if found else None


def active_for_key(store: Store, kind: str, key: str) -> dict[str, Any] | None:
    """The queued or running job of (kind, key), if any (at most one: enqueue inserts only when there is none)."""
    return store.one(
        f"SELECT * FROM jobs INDEXED BY jobs_key WHERE kind = ? AND key = ? AND status IN ({_ACTIVE_SQL})", (kind, key)
    )


def run_is_current(store: Store, job_id: str, rq_id: str) -> bool:
    """Whether the run of `rq_id` is still the job's current run (not cancelled, not superseded)."""
    row = store.one("SELECT status, rq_id FROM jobs WHERE id = ?", (job_id,))
    return row is not None and row["status"] == "in_progress" and row["rq_id"] == rq_id


def trailing_events(store: Store, job_id: str, event: str, most: int = 10) -> int:
    """How many of the job's latest events (up to `most`) are `event`, counted back from the newest."""
    rows = store.query("SELECT event FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT ?", (job_id, most))
    count = 0
    for row in rows:
        if row["event"] != event:
            break
        count += 1
    return count


def _filters(
    status: str | None, queue: str | None, kind: str | None, since: str | None, post_id: int | None
) -> tuple[list[str], list[Any]]:
    """The WHERE conditions and their parameters of a job listing."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("status", status), ("queue", queue), ("kind", kind), ("post_id", post_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since:
        where.append("created_at >= ?")
        params.append(since)
    return where, params


def list_jobs(
    store: Store,
    *,
    status: str | None = None,
    queue: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    post_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    where, params = _filters(status, queue, kind, since, post_id)
    sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
    params.append(limit)
    return store.query(sql, params)


def event_before_start(store: Store, job_id: str) -> str | None:
    """The event that queued the running generation of a job: the one before its latest 'started'."""
    value = store.scalar(
        "SELECT event FROM job_events WHERE job_id = ? AND event <> 'started' AND id < (SELECT MAX(id) FROM"
        " job_events WHERE job_id = ? AND event = 'started') ORDER BY id DESC LIMIT 1",
        (job_id, job_id),
    )
    return str(value) if value is not None else None


def first_event_since_restart(store: Store, job_id: str, event: str) -> str | None:
    """When `event` was first logged on the job since the operator last restarted it (`jobs retry` of a failed
    or cancelled job); None when it was not."""
    value = store.scalar(
        "SELECT MIN(at) FROM job_events WHERE job_id = ? AND event = ? AND id > COALESCE((SELECT MAX(id) FROM"
        " job_events WHERE job_id = ? AND event = 'restarted'), 0)",
        (job_id, event, job_id),
    )
    return str(value) if value is not None else None


def job_events(store: Store, job_id: str) -> list[dict[str, Any]]:
    get_job(store, job_id)
    return store.query("SELECT * FROM job_events WHERE job_id = ? ORDER BY id", (job_id,))


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """A job row with its JSON columns decoded, for --json output."""
    out = dict(row)
    for column in ("payload", "result"):
        if out.get(column):
            with contextlib.suppress(ValueError):
                out[column] = json.loads(out[column])
    return out


def page_jobs(
    store: Store,
    *,
    status: str | None = None,
    queue: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    post_id: int | None = None,
    limit: int = 50,
    cursor: tuple[str, int] | None = None,
) -> tuple[list[dict[str, Any]], tuple[str, int] | None, int]:
    """One page of jobs, newest first, keyset-paginated on (created_at, rowid): (rows, next cursor, total)."""
    where, params = _filters(status, queue, kind, since, post_id)
    filtered = " WHERE " + " AND ".join(where) if where else ""
    total = int(store.scalar("SELECT COUNT(*) FROM jobs" + filtered, params) or 0)
    if cursor is not None:  # rows strictly after the cursor in (created_at DESC, rowid DESC) order
        where.append("(created_at, rowid) < (?, ?)")
        params += [cursor[0], cursor[1]]
    sql = "SELECT rowid AS _rowid, * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
    rows = store.query(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    following = (rows[-1]["created_at"], int(rows[-1]["_rowid"])) if more and rows else None
    for row in rows:
        row.pop("_rowid", None)
    return rows, following, total


def child_jobs(store: Store, job_id: str) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM jobs WHERE parent_id = ? ORDER BY created_at, rowid", (job_id,))


def events_after(store: Store, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """Job events newer than `after_id` with the job's status now (the live feed of the web panel)."""
    return store.query(
        "SELECT e.id, e.job_id, e.at, e.level, e.event, e.message, j.status, j.queue, j.kind, j.post_id"
        " FROM job_events AS e LEFT JOIN jobs AS j ON j.id = e.job_id WHERE e.id > ? ORDER BY e.id LIMIT ?",
        (after_id, limit),
    )


def last_event_id(store: Store) -> int:
    return int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM job_events") or 0)


def hourly_outcomes(store: Store, since: str) -> list[dict[str, Any]]:
    """Per UTC hour since `since`: jobs that ended succeeded and failed (throughput and failure-rate charts)."""
    return store.query(
        "SELECT substr(finished_at, 1, 13) AS hour, SUM(status = 'succeeded') AS succeeded,"
        " SUM(status = 'failed') AS failed FROM jobs WHERE finished_at >= ? AND status IN ('succeeded', 'failed')"
        " GROUP BY hour ORDER BY hour",
        (since,),
    )


def matching_job_ids(
    store: Store,
    *,
    statuses: tuple[str, ...],
    queue: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    before: str | None = None,
    limit: int,
) -> list[str]:
    """Ids of the jobs in one of `statuses` (and of this queue and kind, created in [since, before)), oldest
    first: what a bulk retry or cancel acts on."""
    where, params = _filters(None, queue, kind, since, None)
    where.append(f"status IN ({', '.join('?' for _ in statuses)})")
    params += list(statuses)
    if before:
        where.append("created_at < ?")
        params.append(before)
    rows = store.query(
        f"SELECT id FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at, rowid LIMIT ?", [*params, limit]
    )
    return [str(r["id"]) for r in rows]
