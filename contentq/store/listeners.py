"""Listener heartbeats: one row per `contentq listen` process (by name), read by health and doctor."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from contentq.clock import iso
from contentq.store.db import Store

LISTENER_COLUMNS = (
    "pid", "host", "sources", "state", "started_at", "heartbeat_at", "connected_since", "disconnected_since",
    "disconnect_reason", "last_update_at", "lag_seconds", "updates", "reconnects",
)  # fmt: skip


def start_listener(store: Store, name: str, sources: list[str]) -> None:
    """A fresh row for a listener process starting (a restarted one replaces the row of the one before)."""
    stamp = iso()
    with store.transaction() as conn:
        conn.execute("DELETE FROM listeners WHERE name = ?", (name,))
        conn.execute(
            "INSERT INTO listeners (name, pid, host, sources, state, started_at, heartbeat_at)"
            " VALUES (?, ?, ?, ?, 'starting', ?, ?)",
            (name, os.getpid(), socket.gethostname(), json.dumps(sources), stamp, stamp),
        )


def beat(store: Store, name: str, **fields: Any) -> None:
    """The heartbeat, with whatever else changed (state, lag, counters as `updates=('+', n)`)."""
    assignments = ["heartbeat_at = ?"]
    params: list[Any] = [iso()]
    for column, value in fields.items():
        if column not in LISTENER_COLUMNS:
            raise ValueError(f"unknown listener column {column!r}")
        if isinstance(value, tuple) and value[0] == "+":
            assignments.append(f"{column} = {column} + ?")
            params.append(value[1])
        else:
            assignments.append(f"{column} = ?")
            params.append(value)
    with store.transaction() as conn:
        conn.execute(f"UPDATE listeners SET {', '.join(assignments)} WHERE name = ?", [*params, name])


def get_listeners(store: Store) -> list[dict[str, Any]]:
    rows = store.query("SELECT * FROM listeners ORDER BY name")
    for row in rows:
        row["sources"] = json.loads(row["sources"] or "[]")
    return rows
