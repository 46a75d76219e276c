"""`GET /api/events`: job events (the rows `jobs logs` shows) and post state changes, as Server-Sent Events.

The feed polls SQLite: job events by their rowid (`id > last`), post state changes by the id of `post_changes`
(a row written by a trigger in the same transaction as the change) — two rowid range reads every POLL_SECONDS, so
a change reaches the browser within that time, whatever process made it (a worker, the CLI, this panel). Both
ids are assigned under SQLite's write lock, so they follow commit order: a writer that read the clock earlier
but committed later is not skipped. The event id carries both cursors ("JOB|POST"): a reconnecting EventSource
sends it back as Last-Event-ID and misses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from contentq.errors import ContentqError
from contentq.redact import redact
from contentq.store.db import SQLITE_INT_MAX, Store
from contentq.store.jobs import events_after, last_event_id
from contentq.store.posts import last_post_change, posts_changed_after

POLL_SECONDS = 0.25

ONCE_RETRY_MS = 3000
"""With `once` (the panel's polling fallback), how soon the browser's EventSource comes back for more."""


class Cursor:
    def __init__(self, job_event: int, post_change: int) -> None:
        self.job_event, self.post_change = job_event, post_change

    def __str__(self) -> str:
        return f"{self.job_event}|{self.post_change}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        """A Last-Event-ID this feed sent; anything else (or ids SQLite cannot hold) is refused, not streamed."""
        parts = value.split("|")
        if len(parts) == 2 and all(p.isascii() and p.isdigit() and int(p) <= SQLITE_INT_MAX for p in parts):
            return cls(int(parts[0]), int(parts[1]))
        raise ContentqError(
            f"bad Last-Event-ID {value[:60]!r}: expected 'JOB|POST' (two event ids this feed sent);"
            " leave it out to start from now"
        )

    @classmethod
    def now(cls, store: Store) -> Cursor:
        return cls(last_event_id(store), last_post_change(store))


def poll(store: Store, cursor: Cursor) -> list[dict[str, Any]]:
    """What happened after the cursor, oldest first; advances the cursor."""
    out: list[dict[str, Any]] = []
    for row in events_after(store, cursor.job_event):
        cursor.job_event = int(row["id"])
        out.append({"event": "job", "data": row, "id": str(cursor)})
    for row in posts_changed_after(store, cursor.post_change):
        cursor.post_change = int(row.pop("change_id"))
        out.append({"event": "post", "data": row, "id": str(cursor)})
    return out


def message(item: dict[str, Any]) -> dict[str, str]:
    return {"event": item["event"], "id": item["id"], "data": redact(json.dumps(item["data"], default=str))}


async def stream(
    store: Store, cursor: Cursor, *, max_events: int | None = None, disconnected: Any = None, once: bool = False
) -> AsyncIterator[dict[str, Any]]:
    """The feed; sse-starlette sends the keep-alive pings. With `once`, what is new and then the end: the cursor
    as the last event id (an `id:` alone sets it without an event) and a `retry:` after which the browser's
    EventSource comes back with it as Last-Event-ID, which makes the stream a poll."""
    sent = 0
    while True:
        for item in await asyncio.to_thread(poll, store, cursor):
            yield message(item)
            sent += 1
            if max_events is not None and sent >= max_events:
                return
        if once:
            yield {"id": str(cursor), "retry": ONCE_RETRY_MS}
            return
        if disconnected is not None and await disconnected():
            return
        await asyncio.sleep(POLL_SECONDS)
