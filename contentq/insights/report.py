"""The insights report from the store: each post's rollup (one row, never its samples; the process keeps them
between reports, `rollup`), placed in its route's time zone, then `analysis.analyse`. Shared by `contentq
insights`, the API and the panel page."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from contentq.clock import iso, now
from contentq.errors import ContentqError, NotFoundError
from contentq.insights import rollup
from contentq.insights.analysis import Insights, Options, analyse
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.store import insights as sql

DEFAULT_DAYS = 30
"""The report covers posts published this many days back."""

MAX_DAYS = 3650


CACHE_SECONDS = 300
"""A report is kept (in the process: the panel) while no sample arrives, for at most this long."""

CACHE_KEY = "insights_report"
"""Where the process keeps its last report (runtime.services)."""


def build(runtime: Runtime, *, days: int = DEFAULT_DAYS, route: str | None = None,
          min_posts: int | None = None) -> Insights:  # fmt: skip
    """The report over posts published in the last `days` days (of one route, or all). The panel asks often and
    samples arrive hourly: the last report is reused while no sample, item or subscriber count was stored since,
    the routes file is unchanged, and it is younger than CACHE_SECONDS."""
    if not 1 <= days <= MAX_DAYS:
        raise ContentqError(f"--days {days}: give 1 to {MAX_DAYS} days")
    minimum = min_posts if min_posts is not None else runtime.settings.insights_min_posts
    if minimum < 1:
        raise ContentqError(f"--min-posts {minimum}: give at least 1")
    path = runtime.settings.config_path
    routes = routes_config(runtime).routes if path.exists() else {}
    if route is not None and route not in routes and not _has_posts(runtime, route):
        known = ", ".join(sorted(routes)) or "none configured"
        raise NotFoundError(f"unknown route {route!r} (routes: {known})")
    end = now()
    key = (days, route, minimum, sql.data_stamp(runtime.store), path.stat().st_mtime_ns if path.exists() else None)
    cached = runtime.services.get(CACHE_KEY)
    if cached is not None and cached[0] == key and (end - cached[1]).total_seconds() < CACHE_SECONDS:
        return cast(Insights, cached[2])
    report = _build(runtime, routes, days, route, minimum, end)
    runtime.services[CACHE_KEY] = (key, end, report)
    return report


def _build(runtime: Runtime, routes: dict[str, Any], days: int, route: str | None, minimum: int,
           end: datetime) -> Insights:  # fmt: skip
    since = iso(end - timedelta(days=days))
    zones = {name: spec.schedule.timezone for name, spec in routes.items()}
    posts = rollup.posts_since(runtime, zones, since, route)
    destinations = {p.destination for p in posts}
    series: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for sample in sql.subscriber_series(runtime.store, since):
        if sample["destination"] in destinations:
            series[str(sample["destination"])].append((str(sample["at"]), int(sample["subscribers"])))
    return analyse(posts, dict(series), Options(min_posts=minimum, now=end.astimezone(UTC)), since=since,
                   until=iso(end))  # fmt: skip


def _has_posts(runtime: Runtime, route: str) -> bool:
    return bool(runtime.store.scalar("SELECT 1 FROM insight_items WHERE route = ? LIMIT 1", (route,)))


CSV_COLUMNS = ("section", "route", "destination", "name", "posts", "median_views_24h", "ratio", "value",
               "suggestion", "link")  # fmt: skip


def csv_rows(report: Insights) -> list[dict[str, Any]]:
    """One flat table: a `section` column says what each row is (target, donor, slot, better_slot, rewrite, best,
    worst, subscribers); `value` is the section's own figure (see docs/insights.md)."""
    rows: list[dict[str, Any]] = []
    for t in report.targets:
        rows.append({"section": "target", "route": t.route, "destination": t.destination, "name": "",
                     "posts": t.measured, "median_views_24h": t.median_views_24h,
                     "ratio": t.forwards_per_view, "value": t.reactions_per_view})  # fmt: skip
        for at, count in t.subscribers:
            rows.append({"section": "subscribers", "route": t.route, "destination": t.destination, "name": at,
                         "value": count})  # fmt: skip
    for d in report.donors:
        rows.append({"section": "donor", "route": d.route, "destination": d.destination, "name": d.source,
                     "posts": d.posts, "median_views_24h": d.median_views_24h, "ratio": d.ratio,
                     "suggestion": d.suggestion})  # fmt: skip
    for s in report.slots:
        rows.append({"section": "slot", "route": s.route, "destination": s.destination, "name": s.label,
                     "posts": s.posts, "median_views_24h": s.median_views_24h, "ratio": s.ratio})  # fmt: skip
    for a in report.better_slots:
        rows.append({"section": "better_slot", "route": a.route, "destination": a.destination,
                     "name": f"{a.worse} -> {a.better}", "posts": a.better_posts + a.worse_posts,
                     "median_views_24h": a.better_median, "ratio": a.ratio, "suggestion": a.text})  # fmt: skip
    for r in report.rewrites + report.rewriters:
        rows.append({"section": "rewrite", "route": r.route, "name": r.rewriter, "posts": r.posts,
                     "median_views_24h": r.median_views_24h, "ratio": r.cost_per_1000_views,
                     "value": r.cost_per_post})  # fmt: skip
    for section, lines in (("best", report.best), ("worst", report.worst)):
        for p in lines:
            rows.append({"section": section, "route": p.route, "destination": p.destination,
                         "name": f"post {p.post_id} from {p.source} at {p.slot}", "posts": 1,
                         "median_views_24h": p.views_24h, "ratio": p.ratio, "link": p.link})  # fmt: skip
    return rows


def to_csv(report: Insights) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(report):
        writer.writerow({k: _csv_value(row.get(k)) for k in CSV_COLUMNS})
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, str) and value[:1] in ("=", "+"):
        return "'" + value  # a spreadsheet must not run a donor's name as a formula
    return "" if value is None else value
