"""What the pages and the API show, each from the core function the CLI command of the same name calls."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from contentq import lifecycle
from contentq.clock import iso, now, parse_duration
from contentq.content.html import visible_len_utf16
from contentq.content.preview import PreviewPart, render_preview
from contentq.errors import ContentqError
from contentq.integrations.breakers import llm_breaker_status
from contentq.lifecycle import STATES
from contentq.ops.alerts import evaluate
from contentq.posts import post_json
from contentq.rewrite.usage import usage_summary, usage_totals
from contentq.runtime.config import route_of, routes_config
from contentq.runtime.context import Runtime
from contentq.runtime.queues import check_queue, queue_status
from contentq.schedule import describe, schedule_rows
from contentq.settings import QUEUES
from contentq.store.jobs import STATUSES, child_jobs, decode, get_job, hourly_outcomes, job_events, page_jobs
from contentq.store.posts import get_post, page_posts, post_media_rows

PAGE_MAX = 500


def parse_cursor(value: str | None) -> tuple[str, int] | None:
    """A jobs page cursor: '<created_at>~<rowid>' as the previous page handed it out."""
    if not value:
        return None
    stamp, sep, rowid = value.rpartition("~")
    if not sep or not rowid.isdigit() or len(stamp) > 40:
        raise ContentqError(f"bad cursor {value[:60]!r}: pass the next_cursor of the previous page")
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
    }


def posts_page(rt: Runtime, *, state: str | None, route: str | None, limit: int, before: int | None) -> dict[str, Any]:
    if state and state not in STATES:
        raise ContentqError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
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


def queue_names() -> tuple[str, ...]:
    return QUEUES
