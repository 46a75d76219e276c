"""What the CLI, the jobs and the web call to publish: a post through its publisher, now, or as a dry run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from contentq import lifecycle
from contentq.clock import iso, now, parse
from contentq.errors import ContentqError, FatalJobError, NotFoundError, Reschedule
from contentq.flow import pipeline
from contentq.flow.dispatch import DISPATCH_AHEAD_SECONDS, cancel_publish_job, dispatch_post
from contentq.publish.drivers import publish_to_outbox, publish_to_telegram
from contentq.publish.fanout import fan_out
from contentq.publish.outbox import write_outbox, write_versions
from contentq.publish.preview_destinations import destination_versions
from contentq.publish.publication import LogReporter, Publication, Reporter
from contentq.publish.render import post_media, render
from contentq.routes import Route
from contentq.runtime.config import route_of
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.posts import get_post

DUE_TOLERANCE_SECONDS = 0.0


def publish_post(
    runtime: Runtime,
    post_id: int,
    reporter: Reporter | None = None,
    *,
    last_attempt: bool = True,
    force: bool = False,
    route_loader: Callable[[Runtime, str], Route] | None = None,
) -> dict[str, Any]:
    """Publish a scheduled post now (or continue one whose last run stopped midway); see the module doc.

    Raises Reschedule (not due yet, rate limit, flood wait, Telegram unreachable) and FatalJobError (the
    post failed; the admin was told). `force` publishes before the slot.
    """
    reporter = reporter or LogReporter(runtime)
    store = runtime.store
    try:
        post = get_post(store, post_id)
    except NotFoundError as exc:
        raise FatalJobError(str(exc)) from None
    state = post["state"]
    if state == "published":
        return {"post_id": post_id, "skipped": "already published", "link": post["link"]}
    if state not in ("scheduled", "publishing", "failed"):
        reporter.log("skipped", f"post {post_id} is {state}: nothing to publish")
        return {"post_id": post_id, "skipped": state}
    if state == "scheduled" and not force and post["scheduled_at"]:
        wait = (parse(post["scheduled_at"]) - now()).total_seconds()
        if wait > DUE_TOLERANCE_SECONDS:
            if wait <= DISPATCH_AHEAD_SECONDS:
                raise Reschedule(wait, f"not due until {post['scheduled_at']}")
            store.execute("UPDATE posts SET dispatched_at = NULL WHERE id = ? AND state = 'scheduled'", (post_id,))
            reporter.log("not_due", f"due at {post['scheduled_at']}; `contentq dispatch` hands it over then")
            return {"post_id": post_id, "skipped": "not due", "scheduled_at": post["scheduled_at"]}
    if state == "failed":
        reporter.log("restart", f"publishing the failed post again (it failed with: {post['state_reason']})")

    try:
        route = (route_loader or route_of)(runtime, post["route"])
    except ContentqError as exc:
        lifecycle.move(store, post_id, "publish_failed", reason=f"publish: {exc}")
        raise FatalJobError(str(exc)) from None

    if route.destinations:  # one delivery per destination, each with its own job (publish/fanout.py)
        return fan_out(runtime, post, route, reporter, job_id=getattr(reporter, "job_id", None))
    pub = Publication(runtime, post, route, reporter, last_attempt=last_attempt, round_no=post["publish_round"])
    if route.publisher == "outbox":
        return publish_to_outbox(pub)
    return publish_to_telegram(pub)


def dry_run(runtime: Runtime, post_id: int) -> Path:
    """Render the post into the outbox without touching Telegram or the post's state."""
    post = get_post(runtime.store, post_id)
    route = route_of(runtime, post["route"])
    settings = runtime.settings
    media = post_media(runtime.store, settings, post_id)
    rendered = render(post, media, caption_limit=settings.caption_limit, text_limit=settings.text_limit, route=route)
    folder = write_outbox(settings, post, route, rendered, dry_run=True)
    if route.destinations:  # each destination's version beside the Telegram preview
        write_versions(folder, destination_versions(runtime.store, settings, post, route), media)
    return folder


PUBLISHABLE = lifecycle.sources_of("publish_requested")
"""States `contentq publish ID` publishes from (skipping the slot and approval)."""


def publish_now(
    runtime: Runtime, post_id: int, *, in_process: bool = False, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Publish a post now, skipping its slot and approval: through the publish queue ({"job": id}), or from
    this process right away with `in_process` ({"link": …}). Raises ContentqError saying why it cannot."""
    store = runtime.store
    post = get_post(store, post_id)
    if post["state"] == "published":
        raise ContentqError(f"post {post_id} is already published: {post['link']}")
    if post["state"] == "publishing":
        raise ContentqError(f"post {post_id} is being published; `contentq jobs list --kind publish` shows the job")
    if post["state"] not in PUBLISHABLE or post["rewrite_html"] is None and post["state"] == "rewritten":
        raise ContentqError(f"post {post_id} is {post['state']}; it cannot be published (yet)")
    cancel_publish_job(runtime, post_id)
    if pipeline.schedule_post(runtime, post_id, event="publish_requested", at=now()) is None:
        raise ContentqError(f"post {post_id} changed meanwhile; look at `contentq posts show {post_id}`")
    if not in_process:
        job = dispatch_post(runtime, post_id)
        return {"post_id": post_id, "job": job["job"] if job else None}
    store.execute("UPDATE posts SET dispatched_at = ? WHERE id = ?", (iso(), post_id))
    try:
        result = publish_post(runtime, post_id, reporter, force=True)
    except Reschedule as wait:
        queued = enqueue(runtime, "publish", str(post_id), {}, post_id=post_id, delay=wait.delay)
        raise ContentqError(
            f"not published yet: {wait.reason}; job {queued['id']} publishes it in {wait.delay:.0f} s (needs a worker)"
        ) from None
    except FatalJobError as exc:
        raise ContentqError(f"post {post_id} failed: {exc}") from None
    if result.get("skipped"):
        raise ContentqError(f"post {post_id} was not published: {result['skipped']}")
    return result
