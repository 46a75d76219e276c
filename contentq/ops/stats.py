"""`contentq stats`: what the pipeline did in a window, from SQLite (the record of every job, post and LLM call)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError
from contentq.runtime.context import Runtime


def parse_since(value: str | None) -> timedelta | None:
    """'24h', '7d' … or 'all' (None: no lower bound)."""
    if value is None or value.strip().lower() in ("all", "ever", ""):
        return None
    window = parse_duration(value)
    if window.total_seconds() <= 0:
        raise ContentqError(f"--since {value!r} is an empty window: give e.g. 24h, 7d or all")
    return window


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def job_stats(runtime: Runtime, since_iso: str | None) -> list[dict[str, Any]]:
    """Per queue and kind, over jobs created in the window."""
    where, params = ("WHERE created_at >= ?", [since_iso]) if since_iso else ("", [])
    rows = runtime.store.query(
        f"SELECT id, queue, kind, status, duration_ms FROM jobs {where} ORDER BY queue, kind", params
    )
    retries = {
        r["job_id"]: r["n"]
        for r in runtime.store.query(
            f"SELECT e.job_id, COUNT(*) AS n FROM job_events AS e JOIN jobs AS j ON j.id = e.job_id"
            f" WHERE e.event = 'retrying' {'AND j.created_at >= ?' if since_iso else ''} GROUP BY e.job_id",
            params,
        )
    }
    reschedules = {
        r["job_id"]: r["n"]
        for r in runtime.store.query(
            f"SELECT e.job_id, COUNT(*) AS n FROM job_events AS e JOIN jobs AS j ON j.id = e.job_id"
            f" WHERE e.event = 'rescheduled' {'AND j.created_at >= ?' if since_iso else ''} GROUP BY e.job_id",
            params,
        )
    }
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["queue"], row["kind"])].append(row)
    out = []
    for (queue, kind), jobs in sorted(groups.items()):
        succeeded = sum(1 for j in jobs if j["status"] == "succeeded")
        failed = sum(1 for j in jobs if j["status"] == "failed")
        durations = [
            float(j["duration_ms"])
            for j in jobs
            if j["status"] in ("succeeded", "failed") and j["duration_ms"] is not None
        ]
        finished = succeeded + failed
        out.append(
            {
                "queue": queue,
                "kind": kind,
                "count": len(jobs),
                "succeeded": succeeded,
                "failed": failed,
                "cancelled": sum(1 for j in jobs if j["status"] == "cancelled"),
                "active": sum(1 for j in jobs if j["status"] in ("queued", "in_progress")),
                "failure_rate": round(failed / finished, 4) if finished else None,
                "avg_ms": _round(sum(durations) / len(durations)) if durations else None,
                "p95_ms": _round(percentile(durations, 95)),
                "avg_retries": round(sum(retries.get(j["id"], 0) for j in jobs) / len(jobs), 3),
                "reschedules": sum(reschedules.get(j["id"], 0) for j in jobs),
            }
        )
    return out


def post_stats(runtime: Runtime, since_iso: str | None) -> list[dict[str, Any]]:
    """Per route and state: posts in that state now, and how many of them reached it inside the window."""
    rows = runtime.store.query(
        "SELECT route, state, COUNT(*) AS total, SUM(CASE WHEN updated_at >= ? THEN 1 ELSE 0 END) AS in_window"
        " FROM posts GROUP BY route, state ORDER BY route, state",
        (since_iso or "",),
    )
    return [{**r, "in_window": int(r["in_window"] or 0)} for r in rows]


def llm_stats(runtime: Runtime, since_iso: str | None) -> dict[str, Any]:
    where, params = ("WHERE at >= ?", [since_iso]) if since_iso else ("", [])
    rows = runtime.store.query(
        "SELECT COALESCE(route, '') AS route, COALESCE(model, '') AS model, COUNT(*) AS calls,"
        " SUM(error IS NOT NULL) AS failed, SUM(tokens_in) AS tokens_in, SUM(tokens_out) AS tokens_out,"
        " SUM(cost) AS cost"
        f" FROM usage {where} GROUP BY route, model ORDER BY route, model",
        params,
    )
    for r in rows:
        r["cost"] = round(float(r["cost"] or 0), 6)
    total = {
        "calls": sum(r["calls"] for r in rows),
        "failed": sum(int(r["failed"] or 0) for r in rows),
        "tokens_in": sum(int(r["tokens_in"] or 0) for r in rows),
        "tokens_out": sum(int(r["tokens_out"] or 0) for r in rows),
        "cost": round(sum(r["cost"] for r in rows), 6),
    }
    return {"by_route_model": rows, "total": total}


def collect_stats(runtime: Runtime, since: timedelta | None) -> dict[str, Any]:
    since_iso = iso(now() - since) if since is not None else None
    return {
        "since": since_iso,
        "generated_at": iso(),
        "jobs": job_stats(runtime, since_iso),
        "posts": post_stats(runtime, since_iso),
        "llm": llm_stats(runtime, since_iso),
    }
