"""What the pages and the API show, each from the core function the CLI command of the same name calls."""

from __future__ import annotations

import contextlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from contentq import lifecycle
from contentq.clock import iso, now, parse, parse_duration
from contentq.content.html import safe_href, visible_len_utf16
from contentq.content.preview import PreviewPart, render_preview
from contentq.errors import ContentqError
from contentq.flow.channels import list_sources
from contentq.flow.schedule import describe, schedule_rows
from contentq.integrations.breakers import llm_breaker_status
from contentq.lifecycle import STATES
from contentq.ops.alerts import evaluate
from contentq.ops.listening import listener_probe
from contentq.review.posts import post_json
from contentq.rewrite.usage import usage_summary, usage_totals
from contentq.runtime.config import route_of, routes_config
from contentq.runtime.context import Runtime
from contentq.runtime.queues import check_queue, queue_status
from contentq.runtime.stopping import run_in_flight
from contentq.settings import QUEUES
from contentq.store.footers import learned_footers
from contentq.store.jobs import STATUSES, child_jobs, decode, get_job, hourly_outcomes, job_events, page_jobs
from contentq.store.listeners import get_listeners
from contentq.store.posts import get_post, page_posts, post_media_rows
from contentq.store.search import search_posts
from contentq.store.workers import HOST, is_alive, jobs_finished_by, list_workers

PAGE_MAX = 500


CURSOR = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(\+00:00|Z)?~[0-9]{1,18}$"
"""A jobs page cursor as a page hands it out: '<created_at>~<rowid>'. The time is only a position in the
created_at order (compared as text, as the column is), so any value of this form is a place to start from; the
row id's 18 digits stay within SQLite's INTEGER."""


def parse_cursor(value: str | None) -> tuple[str, int] | None:
    """A jobs page cursor: '<created_at>~<rowid>' as the previous page handed it out."""
    if not value:
        return None
    # Checked before SQL: a row id beyond SQLite's INTEGER would overflow the query's binding (a 500).
    if not value.isascii() or not re.fullmatch(CURSOR, value):
        raise ContentqError(f"bad cursor {value[:60]!r}: pass the next_cursor of the previous page")
    stamp, _, rowid = value.rpartition("~")
    return stamp, int(rowid)


def jobs_page(
    rt: Runtime,
    *,
    status: str | None,
    queue: str | None,
    kind: str | None,
    since: str | None,
    post_id: int | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """The `jobs list` filters, with a cursor for the next page."""
    if status and status not in STATUSES:
        raise ContentqError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    if queue:
        check_queue(queue)
    since_iso = iso(now() - parse_duration(since)) if since else None
    rows, following, total = page_jobs(
        rt.store, status=status or None, queue=queue or None, kind=kind or None, since=since_iso, post_id=post_id,
        limit=limit, cursor=parse_cursor(cursor),
    )  # fmt: skip
    return {
        "items": [decode(r) for r in rows],
        "total": total,
        "next_cursor": f"{following[0]}~{following[1]}" if following else None,
    }


def job_detail(rt: Runtime, job_id: str) -> dict[str, Any]:
    job = decode(get_job(rt.store, job_id))
    parent = None
    if job.get("parent_id"):
        with contextlib.suppress(ContentqError):
            parent = get_job(rt.store, job["parent_id"])
    return {
        "job": job,
        # A cancelled job whose run has not reached its safe point yet: Retry is refused until it has.
        "stopping_on": run_in_flight(rt, job_id, release=False) if job["status"] == "cancelled" else None,
        "events": job_events(rt.store, job_id),
        "parent": parent,
        "children": child_jobs(rt.store, job_id),
    }


def charts(rt: Runtime, hours: int = 24) -> list[dict[str, Any]]:
    """Per hour of the last `hours`: jobs succeeded, failed, and the failure rate (empty hours included)."""
    start = now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    found = {r["hour"]: r for r in hourly_outcomes(rt.store, iso(start))}
    out = []
    for n in range(hours):
        hour = iso(start + timedelta(hours=n))[:13]
        row = found.get(hour, {})
        ok, failed = int(row.get("succeeded") or 0), int(row.get("failed") or 0)
        out.append(
            {"hour": hour, "succeeded": ok, "failed": failed,
             "failure_rate": round(failed / (ok + failed), 4) if ok + failed else None}
        )  # fmt: skip
    return out


def dashboard(rt: Runtime) -> dict[str, Any]:
    alerts = [c.as_dict() for c in evaluate(rt) if c.firing]
    return {
        "queues": queue_status(rt),
        "llm_breaker": llm_breaker_status(rt),
        "alerts": alerts,
        "hours": charts(rt),
        "destination_limits": _destination_limits(rt),
    }


def _destination_limits(rt: Runtime) -> list[dict[str, Any]]:
    """Each X and Instagram account's token bucket and next free time (docs/destinations.md)."""
    from contentq.publish.limits import destination_limits

    return destination_limits(rt)


def posts_page(
    rt: Runtime, *, state: str | None, route: str | None, limit: int, before: int | None, search: str | None = None
) -> dict[str, Any]:
    """A page of posts, newest first; with `search`, only those whose original or rewritten text has its words
    (SQLite FTS5: `posts list --search`)."""
    if state and state not in STATES:
        raise ContentqError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    if search and search.strip():
        rows, following, total = search_posts(
            rt.store, search, state=state or None, route=route or None, limit=limit, before_id=before
        )
    else:
        rows, following, total = page_posts(
            rt.store, state=state or None, route=route or None, limit=limit, before_id=before
        )
    return {"items": rows, "total": total, "next_cursor": following}


def preview(rt: Runtime, post: dict[str, Any]) -> tuple[str, list[str]]:
    """The post as the messages it will be (the publisher's own render), and notes on what it could not show."""
    from contentq.publish import PublishError
    from contentq.publish.outbox import preview_parts, preview_time
    from contentq.publish.render import post_media, render  # imports Telethon: only when a post is shown

    notes: list[str] = []
    route = None
    try:
        route = route_of(rt, post["route"])
    except ContentqError as exc:
        notes.append(str(exc))
    try:
        media = post_media(rt.store, rt.settings, post["id"])
    except PublishError as exc:
        notes.append(str(exc))
        media = [
            {**m, "file": rt.settings.media_dir / m["path"]}
            for m in post_media_rows(rt.store, post["id"])
            if m["path"] and (rt.settings.media_dir / m["path"]).exists()
        ]
    channel = route.target if route else (post.get("target") or post["route"])
    try:
        rendered = render(
            post, media, caption_limit=rt.settings.caption_limit, text_limit=rt.settings.text_limit, route=route
        )
    except ContentqError as exc:
        notes.append(str(exc))
        parts = [PreviewPart(post.get("rewrite_html") or post.get("text_html") or "")]
        return render_preview(parts, channel=channel, time_label=preview_time(post)), notes
    notes += rendered.notes
    parts = preview_parts(rendered, lambda row: f"/media/{row['id']}" if row.get("id") else "")
    return render_preview(parts, channel=channel, time_label=preview_time(post)), notes


def post_detail(rt: Runtime, post_id: int) -> dict[str, Any]:
    from contentq.publish.ledger import sends_of

    post = get_post(rt.store, post_id)
    html, notes = preview(rt, post)
    return {
        "post": post_json(post),
        "media": post_media_rows(rt.store, post_id),
        "sends": sends_of(rt.store, post_id),
        "history": lifecycle.history(rt.store, post_id),
        "jobs": page_jobs(rt.store, post_id=post_id, limit=20)[0],
        "original_length": visible_len_utf16(post.get("text_html") or ""),
        "rewrite_length": visible_len_utf16(post.get("rewrite_html") or ""),
        "preview_html": html,
        "preview_notes": notes,
        **_destinations(rt, post),
    }


def _destinations(rt: Runtime, post: dict[str, Any]) -> dict[str, Any]:
    """A post of a route with destinations: its deliveries, and each destination's version (docs/destinations.md)."""
    from contentq.publish.preview_destinations import destination_versions, render_versions
    from contentq.review.posts import delivery_json
    from contentq.store.deliveries import deliveries_of

    route = routes_config(rt).routes.get(post["route"])
    versions = destination_versions(rt.store, rt.settings, post, route) if route and route.destinations else []
    by_name = {Path(m["path"]).name: m["id"] for m in post_media_rows(rt.store, post["id"]) if m.get("path")}
    return {
        "deliveries": [
            {**d, "link": safe_href(d["link"])} for d in map(delivery_json, deliveries_of(rt.store, post["id"]))
        ],
        "destinations": versions,
        "destinations_html": render_versions(versions, lambda name: f"/media/{by_name.get(name, 0)}"),
    }


def schedule_view(rt: Runtime, limit: int = 500) -> dict[str, Any]:
    config = routes_config(rt)
    rows = schedule_rows(rt.store, config.routes, limit=limit)
    routes: list[dict[str, Any]] = [
        {"route": r.name, "target": r.target, "schedule": describe(r.schedule), "approval": r.approval,
         "publisher": r.publisher}
        for r in config.routes.values()
    ]  # fmt: skip
    by_route: dict[str, list[dict[str, Any]]] = {r["route"]: [] for r in routes}
    for row in rows:
        by_route.setdefault(row["route"], []).append(row)
    return {"posts": rows, "routes": routes, "by_route": by_route}


def usage_view(rt: Runtime, since: str | None, route: str | None) -> dict[str, Any]:
    since_iso = iso(now() - parse_duration(since)) if since else None
    rows = usage_summary(rt.store, since=since_iso, route=route or None)
    return {"days": rows, "total": usage_totals(rows)}


def published_link(link: str | None) -> dict[str, str | None]:
    """A published post's link for its page: a web or Telegram link to click; the outbox publisher's folder
    (a file:// URL, which a browser will not open from a page) as its path, to copy."""
    if not link:
        return {"href": None, "text": None}
    if link.startswith("file://"):
        return {"href": None, "text": "outbox: " + unquote(urlsplit(link).path)}
    return {"href": safe_href(link), "text": link}


def queue_names() -> tuple[str, ...]:
    return QUEUES


def workers_view(rt: Runtime) -> list[dict[str, Any]]:
    """Every worker contentq knows (its `workers` table: registration and heartbeats, Redis or not): state,
    queues, current job, heartbeat age, memory (a process on this host), jobs done since it started."""
    rows = list_workers(rt.store)
    stamp = now()
    ttl = rt.settings.worker_heartbeat_ttl
    done = jobs_finished_by(rt.store, min(r["started_at"] for r in rows)) if rows else {}
    out = []
    for row in rows:
        state = "stopped" if row["stopped_at"] else ("alive" if is_alive(row, ttl, stamp) else "dead")
        counts = done.get(row["name"], {})
        out.append(
            {**row, "queues": [q for q in (row["queues"] or "").split(",") if q], "state": state,
             "heartbeat_age_s": round(max(0.0, (stamp - parse(row["heartbeat_at"])).total_seconds()), 1),
             "memory_kb": resident_kb(int(row["pid"])) if state == "alive" and row["host"] == HOST else None,
             "jobs_succeeded": counts.get("succeeded", 0), "jobs_failed": counts.get("failed", 0)}
        )  # fmt: skip
    return out


def resident_kb(pid: int) -> int | None:
    """A process's resident memory from /proc (Linux); None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def sources_view(rt: Runtime) -> list[dict[str, Any]]:
    """Per donor channel (`contentq sources list`): route, last collect, cursor, counts, error; the listener that
    follows it, with `contentq health`'s verdict; the footer learned from its posts."""
    listeners = get_listeners(rt.store)
    footers = learned_footers(rt.store)
    out = []
    for row in list_sources(rt):
        follower = next((lst for lst in listeners if row["source"] in lst["sources"]), None)
        listener = None
        if follower is not None:
            probe = listener_probe(follower, rt.settings)
            listener = {"name": follower["name"], "state": follower["state"], "status": probe.status,
                        "detail": probe.detail, "heartbeat_at": follower["heartbeat_at"]}  # fmt: skip
        footer = footers.get(row["source"])
        learned = {k: footer[k] for k in ("lines", "sample", "learned_at")} if footer else None
        out.append({**row, "listener": listener, "footer": learned})
    return out
