"""`GET /api/events`: job events (the rows `jobs logs` shows) and post state changes, as Server-Sent Events.

The feed polls SQLite: job events by their rowid (`id > last`), posts by (updated_at, id) on an index — two
indexed range reads every POLL_SECONDS, so a change reaches the browser within that time, whatever process made
it (a worker, the CLI, this panel). The event id carries both cursors: a reconnecting EventSource sends it back
as Last-Event-ID and misses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from contentq.errors import ContentqError
from contentq.redact import redact
from contentq.store.db import Store
from contentq.store.jobs import events_after, last_event_id
from contentq.store.posts import last_post_change, posts_changed_after

POLL_SECONDS = 0.25


class Cursor:
    def __init__(self, job_event: int, post_stamp: str, post_id: int) -> None:
        self.job_event, self.post_stamp, self.post_id = job_event, post_stamp, post_id

    def __str__(self) -> str:
        return f"{self.job_event}|{self.post_stamp}|{self.post_id}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        parts = value.split("|")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or len(parts[1]) > 40:
            raise ContentqError(f"bad Last-Event-ID {value[:60]!r}: leave it out to start from now")
        return cls(int(parts[0]), parts[1], int(parts[2]))

    @classmethod
    def now(cls, store: Store) -> Cursor:
        stamp, post_id = last_post_change(store)
        return cls(last_event_id(store), stamp, post_id)


def poll(store: Store, cursor: Cursor) -> list[dict[str, Any]]:
    """What happened after the cursor, oldest first; advances the cursor."""
    out: list[dict[str, Any]] = []
    for row in events_after(store, cursor.job_event):
        cursor.job_event = int(row["id"])
        out.append({"event": "job", "data": row, "id": str(cursor)})
    for row in posts_changed_after(store, cursor.post_stamp, cursor.post_id):
        cursor.post_stamp, cursor.post_id = row["updated_at"], int(row["id"])
        out.append({"event": "post", "data": row, "id": str(cursor)})
    return out


def message(item: dict[str, Any]) -> dict[str, str]:
    return {"event": item["event"], "id": item["id"], "data": redact(json.dumps(item["data"], default=str))}


async def stream(
    store: Store, cursor: Cursor, *, max_events: int | None = None, disconnected: Any = None
) -> AsyncIterator[dict[str, str]]:
    """The feed; sse-starlette sends the keep-alive pings."""
    sent = 0
    while True:
        for item in await asyncio.to_thread(poll, store, cursor):
            yield message(item)
            sent += 1
            if max_events is not None and sent >= max_events:
                return
        if disconnected is not None and await disconnected():
            return
        await asyncio.sleep(POLL_SECONDS)
