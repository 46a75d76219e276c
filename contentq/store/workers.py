"""Worker liveness in SQLite: each worker beats here whatever Redis does, so a dead one is known for sure."""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from contentq.clock import iso, now, parse
from contentq.store.db import Store

HOST = socket.gethostname()


def register_worker(store: Store, name: str, queues: list[str]) -> None:
    stamp = iso()
    store.execute(
        "INSERT INTO workers (name, host, pid, queues, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, queues = excluded.queues,"
        " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, current_job = NULL,"
        " stopped_at = NULL",
        (name, HOST, os.getpid(), ",".join(queues), stamp, stamp),
    )


def beat(store: Store, name: str) -> None:
    store.execute("UPDATE workers SET heartbeat_at = ? WHERE name = ?", (iso(), name))


def grace_after_stall(store: Store, lasted: float, ttl: float) -> int:
    """After the database could take no write for `lasted` seconds (another process held it, a full disk), the
    beats of the workers that were alive when it began are as old as the stall: date them now, so none is taken
    for dead before it could beat again. Workers already silent then are left as they are (a dead one stays dead);
    a short wait (under a second) changes nothing."""
    if lasted < 1.0:
        return 0
    stamp = now()
    alive_then = iso(stamp - timedelta(seconds=lasted + ttl))
    cursor = store.execute(
        "UPDATE workers SET heartbeat_at = ? WHERE stopped_at IS NULL AND heartbeat_at >= ? AND heartbeat_at < ?",
        (iso(stamp), alive_then, iso(stamp)),
    )
    return cursor.rowcount


def clear_current_job(store: Store, name: str) -> None:
    store.execute("UPDATE workers SET current_job = NULL WHERE name = ? AND current_job IS NOT NULL", (name,))


RELEASE_JOB = "UPDATE workers SET current_job = NULL WHERE name = ? AND current_job = ?"


def release_job(store: Store, name: str, job_id: str) -> None:
    """The run of `job_id` on worker `name` is over (it stopped, or the worker is dead)."""
    store.execute(RELEASE_JOB, (name, job_id))


def release_job_in(conn: sqlite3.Connection, name: str | None, job_id: str) -> None:
    """release_job inside the caller's transaction (with the event that says the run ended)."""
    if name:
        conn.execute(RELEASE_JOB, (name, job_id))


def holders(store: Store, job_id: str) -> list[dict[str, Any]]:
    """The workers whose row says they run `job_id` now (alive or not: see is_alive)."""
    return store.query("SELECT * FROM workers WHERE current_job = ?", (job_id,))


def mark_stopped(store: Store, name: str) -> None:
    store.execute("UPDATE workers SET stopped_at = ?, current_job = NULL WHERE name = ?", (iso(), name))


def get_worker(store: Store, name: str) -> dict[str, Any] | None:
    return store.one("SELECT * FROM workers WHERE name = ?", (name,))


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's process holds the pid: it exists
    return False


def is_alive(row: dict[str, Any], ttl: float, stamp: datetime | None = None) -> bool:
    """A worker is alive while it beats and has not stopped; on this host, a vanished pid is dead at once."""
    if row["stopped_at"]:
        return False
    if row["host"] == HOST and _pid_gone(int(row["pid"])):
        return False
    return (stamp or now()) - parse(row["heartbeat_at"]) <= timedelta(seconds=ttl)


def worker_state(store: Store, name: str | None, ttl: float) -> tuple[str, dict[str, Any] | None]:
    """('alive' | 'dead' | 'unknown', the row): unknown when the worker never registered (an older version)."""
    if not name:
        return "unknown", None
    row = get_worker(store, name)
    if row is None:
        return "unknown", None
    return ("alive" if is_alive(row, ttl) else "dead"), row


def forget_stopped(store: Store, older_than: timedelta) -> int:
    """Drop rows of workers silent for long (the table would grow with every restart); a job whose worker is
    forgotten falls back to the time-based check of reconcile."""
    cursor = store.execute("DELETE FROM workers WHERE heartbeat_at < ?", (iso(now() - older_than),))
    return cursor.rowcount


def list_workers(store: Store) -> list[dict[str, Any]]:
    """Every worker that registered and was not forgotten: running ones first, the latest beat first."""
    return store.query("SELECT * FROM workers ORDER BY stopped_at IS NOT NULL, heartbeat_at DESC, name")


def live_workers(store: Store, ttl: float) -> list[dict[str, Any]]:
    """The workers alive now by their heartbeats (stopped ones and those silent past `ttl` are left out)."""
    stamp = now()
    fresh = iso(stamp - timedelta(seconds=ttl))
    rows = store.query("SELECT * FROM workers WHERE stopped_at IS NULL AND heartbeat_at >= ?", (fresh,))
    return [row for row in rows if is_alive(row, ttl, stamp)]


def jobs_finished_by(store: Store, since: str) -> dict[str, dict[str, int]]:
    """Per worker: jobs it ran that finished at or after `since`, succeeded and failed (a job run again later
    counts for the worker of its last run only: `jobs.worker` names that one)."""
    rows = store.query(
        "SELECT worker, SUM(status = 'succeeded') AS succeeded, SUM(status = 'failed') AS failed FROM jobs"
        " WHERE finished_at >= ? AND worker IS NOT NULL GROUP BY worker",
        (since,),
    )
    return {r["worker"]: {"succeeded": int(r["succeeded"] or 0), "failed": int(r["failed"] or 0)} for r in rows}
