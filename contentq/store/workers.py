"""Worker liveness in SQLite: each worker beats here whatever Redis does, so a dead one is known for sure."""

from __future__ import annotations

import os
import socket
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


def clear_current_job(store: Store, name: str) -> None:
    store.execute("UPDATE workers SET current_job = NULL WHERE name = ? AND current_job IS NOT NULL", (name,))


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


def live_workers(store: Store, ttl: float) -> list[dict[str, Any]]:
    """Workers that beat within `ttl` and have not stopped (on this host: whose pid still exists)."""
    stamp = now()
    rows = store.query("SELECT * FROM workers WHERE stopped_at IS NULL ORDER BY name")
    return [row for row in rows if is_alive(row, ttl, stamp)]
