"""LLM usage: tokens in and out and an estimated cost per call, summed per post, day and route."""

from __future__ import annotations

from typing import Any

from contentq.clock import iso
from contentq.settings import Settings
from contentq.store import Store


def estimate_cost(settings: Settings, tokens_in: int, tokens_out: int) -> float:
    """Dollars, from CONTENTQ_OPENAI_PRICE_IN_PER_1M and _OUT_PER_1M."""
    return tokens_in / 1e6 * settings.openai_price_in_per_1m + tokens_out / 1e6 * settings.openai_price_out_per_1m


def record_usage(
    store: Store,
    settings: Settings,
    *,
    post_id: int | None,
    route: str | None,
    job_id: str | None,
    model: str,
    tokens_in: int,
    tokens_out: int,
    error: str | None = None,
    batch: bool = False,
) -> float:
    """One request to the LLM: what it cost, or (with `error`, no tokens) why it failed. A `batch` request (a
    line of the Batch API) costs CONTENTQ_OPENAI_BATCH_PRICE_SHARE of a direct one."""
    cost = estimate_cost(settings, tokens_in, tokens_out)
    if batch:
        cost *= settings.openai_batch_price_share
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO usage (at, post_id, route, job_id, model, tokens_in, tokens_out, cost, error, batch)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (iso(), post_id, route, job_id, model, tokens_in, tokens_out, cost, error[:500] if error else None,
             int(batch)),
        )  # fmt: skip
    return cost


def last_answered_at(store: Store) -> str | None:
    """When the LLM last answered a request (None: never), which names an outage: the requests failing since."""
    value = store.scalar("SELECT MAX(at) FROM usage WHERE error IS NULL")
    return str(value) if value else None


def post_usage(store: Store, post_id: int) -> dict[str, Any]:
    row = store.one(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(error IS NOT NULL), 0) AS failed,"
        " COALESCE(SUM(tokens_in), 0) AS tokens_in, COALESCE(SUM(tokens_out), 0) AS tokens_out,"
        " COALESCE(SUM(cost), 0) AS cost"
        " FROM usage WHERE post_id = ?",
        (post_id,),
    )
    assert row is not None
    return row


def usage_summary(store: Store, *, since: str | None = None, route: str | None = None) -> list[dict[str, Any]]:
    """One row per (day, route): calls (failed ones included), failed, batch (calls at the batch price), posts,
    tokens in and out, cost; days in UTC, oldest first."""
    where, params = [], []
    if since:
        where.append("at >= ?")
        params.append(since)
    if route:
        where.append("route = ?")
        params.append(route)
    sql = (
        "SELECT substr(at, 1, 10) AS day, COALESCE(route, '') AS route, COUNT(*) AS calls,"
        " SUM(error IS NOT NULL) AS failed, SUM(batch) AS batch,"
        " COUNT(DISTINCT post_id) AS posts, SUM(tokens_in) AS tokens_in, SUM(tokens_out) AS tokens_out,"
        " ROUND(SUM(cost), 6) AS cost FROM usage"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " GROUP BY day, route ORDER BY day, route"
    )
    return store.query(sql, params)


def usage_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "calls": sum(r["calls"] for r in rows),
        "failed": sum(r["failed"] or 0 for r in rows),
        "batch": sum(r.get("batch") or 0 for r in rows),
        "tokens_in": sum(r["tokens_in"] or 0 for r in rows),
        "tokens_out": sum(r["tokens_out"] or 0 for r in rows),
        "cost": round(sum(r["cost"] or 0 for r in rows), 6),
    }
