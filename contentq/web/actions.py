"""Post actions of the panel, each the core function its CLI command calls.

approve, reject, unschedule and schedule-at are `contentq.pipeline` functions (the CLI calls the same).
TEMPORARY: `edit_post` and `publish_post_now` repeat the logic that still lives inside `cli/posts.py edit` and
`cli/publish.py publish`; the `cores` branch moves that logic into core functions — once it is merged, these two
must call those functions and this copy must go.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contentq import pipeline
from contentq.clock import iso, now
from contentq.content.html import validate_html, visible_len_utf16
from contentq.content.split import split_html
from contentq.errors import ContentqError
from contentq.runtime.context import Runtime
from contentq.schedule import resolve_at
from contentq.store.posts import get_post

EDITABLE = ("rewritten", "awaiting_approval", "scheduled", "failed")
PUBLISHABLE = ("rewritten", "awaiting_approval", "scheduled", "failed")


def approve(rt: Runtime, post_id: int) -> datetime:
    return pipeline.approve(rt, post_id)


def reject(rt: Runtime, post_id: int, reason: str | None) -> dict[str, Any]:
    return pipeline.reject(rt, post_id, reason or None)


def unschedule(rt: Runtime, post_id: int) -> dict[str, Any]:
    return pipeline.unschedule(rt, post_id)


def schedule_at(rt: Runtime, post_id: int, at: str) -> tuple[datetime, str | None]:
    post = get_post(rt.store, post_id)
    route = pipeline.route_of(rt, post["route"])
    when, note = resolve_at(at, route.schedule.timezone)
    return pipeline.reschedule_at(rt, post_id, when), note


def edit_post(rt: Runtime, post_id: int, edited: str) -> str:
    """Save a new text with the checks of `posts edit`; returns what the CLI prints after the save."""
    post = get_post(rt.store, post_id)
    if post["state"] not in EDITABLE:
        raise ContentqError(f"post {post_id} is {post['state']}; only posts not yet published can be edited")
    pipeline.refuse_if_parts_out(rt.store, post_id, "edited")
    edited = edited.replace("\r\n", "\n").rstrip("\n")
    problems = validate_html(edited)
    if problems:
        raise ContentqError("the edited text is not valid Telegram HTML: " + "; ".join(problems))
    has_media = bool(rt.store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ?", (post_id,)))
    limit = rt.settings.text_limit
    length = visible_len_utf16(edited)
    route = pipeline.routes_config(rt).routes.get(post["route"])
    split = route is None or route.long_text == "split"
    if length > limit and not split:
        raise ContentqError(
            f"the edited text is {length} characters, over Telegram's {limit}, and route {post['route']!r} has "
            'long_text = "truncate"; shorten it, or set long_text = "split" to send it as several messages'
        )
    if not edited.strip() and not has_media:
        raise ContentqError("the edited text is empty and the post has no media; reject the post instead")
    states = ", ".join("?" for _ in EDITABLE)
    cursor = rt.store.execute(
        f"UPDATE posts SET rewrite_html = ?, updated_at = ? WHERE id = ? AND state IN ({states})"
        f" AND ({pipeline.PARTS_OUT_SQL}) = 0",
        (edited, iso(), post_id, *EDITABLE, post_id),
    )
    if cursor.rowcount != 1:
        pipeline.refuse_if_parts_out(rt.store, post_id, "edited")
        raise ContentqError(f"post {post_id} changed state while you edited it; reload it")
    note = ""
    if has_media and length > rt.settings.caption_limit:
        note = f" (over the caption limit of {rt.settings.caption_limit}: the text goes as its own message)"
    if length > limit:
        note += f" (over Telegram's {limit}: sent as {len(split_html(edited, limit))} messages)"
    return f"post {post_id} saved, {length} characters{note}"


def publish_post_now(rt: Runtime, post_id: int) -> str:
    """`contentq publish ID` (through the publish queue): skip the slot and approval; returns the job id."""
    from contentq.dispatch import cancel_publish_job, dispatch_post

    post = get_post(rt.store, post_id)
    if post["state"] == "published":
        raise ContentqError(f"post {post_id} is already published: {post['link']}")
    if post["state"] == "publishing":
        raise ContentqError(f"post {post_id} is being published")
    if post["state"] not in PUBLISHABLE or post["rewrite_html"] is None and post["state"] == "rewritten":
        raise ContentqError(f"post {post_id} is {post['state']}; it cannot be published (yet)")
    cancel_publish_job(rt, post_id)
    if pipeline.schedule_post(rt, post_id, from_states=PUBLISHABLE, at=now(), dispatch=False) is None:
        raise ContentqError(f"post {post_id} changed meanwhile; reload it")
    job = dispatch_post(rt, post_id)
    return str(job["job"]) if job else "?"
