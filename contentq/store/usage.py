"""The `usage` table: one row per request to a paid API (an LLM call, an image), with its tokens and cost."""

from __future__ import annotations

from typing import Any

from contentq.store.db import Store

COLUMNS = (
    "at", "post_id", "route", "job_id", "model", "kind", "tokens_in", "tokens_cached", "tokens_out", "images",
    "cost", "saved", "detail", "error", "batch",
)  # fmt: skip


def insert_usage(store: Store, row: dict[str, Any]) -> None:
    """One request; keys of COLUMNS (missing ones take the column's default)."""
    given = [c for c in COLUMNS if c in row]
    with store.transaction() as conn:
        conn.execute(
            f"INSERT INTO usage ({', '.join(given)}) VALUES ({', '.join('?' for _ in given)})",
            [row[c] for c in given],
        )


def last_answered_at(store: Store) -> str | None:
    """When the LLM last answered a request (None: never)."""
    value = store.scalar("SELECT MAX(at) FROM usage WHERE error IS NULL AND kind = 'llm'")
    return str(value) if value else None


def post_usage(store: Store, post_id: int) -> dict[str, Any]:
    row = store.one(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(error IS NOT NULL), 0) AS failed,"
        " COALESCE(SUM(tokens_in), 0) AS tokens_in, COALESCE(SUM(tokens_cached), 0) AS tokens_cached,"
        " COALESCE(SUM(tokens_out), 0) AS tokens_out, COALESCE(SUM(images), 0) AS images,"
        " COALESCE(SUM(cost), 0) AS cost FROM usage WHERE post_id = ?",
        (post_id,),
    )
    assert row is not None
    return row


def usage_by_day(store: Store, *, since: str | None = None, route: str | None = None) -> list[dict[str, Any]]:
    """One row per (day, route), days in UTC, oldest first: calls (LLM requests, failed ones included), failed,
    posts, tokens in / cached / out, saved (by the prompt cache), images and what they cost, cost (all of it)."""
    where, params = [], []
    if since:
        where.append("at >= ?")
        params.append(since)
    if route:
        where.append("route = ?")
        params.append(route)
    sql = (
        "SELECT substr(at, 1, 10) AS day, COALESCE(route, '') AS route, SUM(kind = 'llm') AS calls,"
        " SUM(error IS NOT NULL) AS failed, SUM(batch) AS batch, COUNT(DISTINCT post_id) AS posts,"
        " SUM(tokens_in) AS tokens_in,"
        " SUM(tokens_cached) AS tokens_cached, SUM(tokens_out) AS tokens_out, ROUND(SUM(saved), 6) AS saved,"
        " SUM(images) AS images, ROUND(SUM(CASE WHEN kind = 'image' THEN cost ELSE 0 END), 6) AS image_cost,"
        " ROUND(SUM(cost), 6) AS cost FROM usage"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " GROUP BY day, route ORDER BY day, route"
    )
    return store.query(sql, params)


def spent_since(store: Store, since: str, *, route: str | None = None) -> float:
    """Dollars spent since an instant (ISO UTC): by one route, or (None) by all of them. Batch lines sent or
    gathering but not yet answered into `usage` count at their estimate (batch_items.estimate)."""
    where, params = "at >= ?", [since]
    pending = "status IN ('queued', 'answered') AND created_at >= ?"
    if route is not None:
        where, pending, params = f"route = ? AND {where}", f"route = ? AND {pending}", [route, since]
    value = store.scalar(
        f"SELECT (SELECT COALESCE(SUM(cost), 0) FROM usage WHERE {where})"
        f" + (SELECT COALESCE(SUM(estimate), 0) FROM batch_items WHERE {pending})",
        (*params, *params),
    )
    return float(value or 0.0)
