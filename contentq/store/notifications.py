"""The record of admin notifications (alerts): what was sent, when, and how many repeats were held back."""

from __future__ import annotations

from typing import Any

from contentq.store.db import Store


def list_notifications(
    store: Store, *, since: str | None = None, level: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first: id, at, level, key, message, delivered (0: the backend could not send it) and suppressed
    (repeats of the same key inside the throttle window, counted here instead of sent)."""
    where, params = [], []
    if since:
        where.append("at >= ?")
        params.append(since)
    if level:
        where.append("level = ?")
        params.append(level)
    sql = "SELECT * FROM notifications" + (" WHERE " + " AND ".join(where) if where else "")
    return store.query(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
