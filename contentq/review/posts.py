"""What a person does to posts (the CLI's `posts` and `schedule` commands, the web admin): list, show,
approve, reject, edit, schedule at a time, unschedule.

Each function takes ids and plain values, returns plain data, and raises ContentqError (one sentence that
says what to do) for a request that cannot be done.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from contentq import lifecycle
from contentq.clock import iso
from contentq.content.html import validate_html, visible_len_utf16
from contentq.content.split import split_html
from contentq.errors import ContentqError
from contentq.flow import pipeline
from contentq.flow.dispatch import cancel_publish_job
from contentq.flow.schedule import in_zone, resolve_at
from contentq.lifecycle import STATES
from contentq.publish.fanout import delivery_summary, platform_ids
from contentq.publish.ledger import sends_of
from contentq.runtime.config import route_of, routes_config
from contentq.runtime.context import Runtime
from contentq.store import audit
from contentq.store import posts as store_posts
from contentq.store.deliveries import deliveries_of, deliveries_of_posts
from contentq.store.posts import get_post

EDITABLE = ("rewritten", "awaiting_approval", "scheduled", "failed")
"""States whose text can still be edited."""


def post_json(row: dict[str, Any]) -> dict[str, Any]:
    """A post row as JSON data: bytes dropped, the JSON columns decoded."""
    out = {k: v for k, v in row.items() if not isinstance(v, bytes | bytearray)}
    for key in ("message_ids", "source_msg_ids"):
        if isinstance(out.get(key), str):
            with contextlib.suppress(ValueError):
                out[key] = json.loads(out[key])
    return out


def list_posts(
    runtime: Runtime, *, state: str | None = None, route: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Posts, newest first, optionally of one state and one route."""
    if state is not None and state not in STATES:
        raise ContentqError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    rows = store_posts.list_posts(runtime.store, state=state, route=route, limit=limit)
    by_post = deliveries_of_posts(runtime.store, [r["id"] for r in rows])
    for row in rows:
        if by_post.get(row["id"]):
            row["deliveries"] = delivery_summary(by_post[row["id"]])
    return rows


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    """A delivery as shown by `posts show --json` and the API: its ids decoded."""
    return {
        "id": row["id"], "destination": row["destination"], "state": row["state"], "reason": row["state_reason"],
        "due_at": row["due_at"], "published_at": row["published_at"], "link": row["link"],
        "ids": platform_ids(row), "notes": row["notes"],
    }  # fmt: skip


@dataclass
class PostDetails:
    post: dict[str, Any]
    media: list[dict[str, Any]]
    sends: list[dict[str, Any]]
    """The post's rows in the sends ledger, every round."""
    original: str
    """The text the rewrite was made from (for a generated post: what the LLM was asked to write about)."""
    deliveries: list[dict[str, Any]]
    """One per destination of a route with `destinations` (docs/destinations.md); [] otherwise."""
    history: list[dict[str, Any]]
    """Its moves, oldest first: at, from_state, state, event, actor, reason (lifecycle.history)."""
    actions: list[dict[str, Any]]
    """What people did to it besides its moves (a text edited), oldest first: at, actor, action, detail."""

    def as_json(self) -> dict[str, Any]:
        return {
            **post_json(self.post), "media": self.media, "sends": self.sends,
            "deliveries": [delivery_json(d) for d in self.deliveries], "history": self.history,
            "actions": self.actions,
        }  # fmt: skip


def post_details(runtime: Runtime, post_id: int) -> PostDetails:
    post = get_post(runtime.store, post_id)
    media = runtime.store.query(
        "SELECT id, origin, kind, path, mime, size FROM media WHERE post_id = ? ORDER BY origin, position", (post_id,)
    )
    original = post["text_html"] or ""
    if (post["source"] or "").startswith("generate:"):
        route = routes_config(runtime).routes.get(post["route"])
        original = f"(written by the LLM on the topic: {route.generate.topic if route and route.generate else '?'})"
    history = lifecycle.history(runtime.store, post_id)
    return PostDetails(
        post, media, sends_of(runtime.store, post_id), original, deliveries_of(runtime.store, post_id), history,
        audit.actions_on(runtime.store, "post", str(post_id)),
    )  # fmt: skip


def approve(runtime: Runtime, post_id: int) -> dict[str, Any]:
    """A post awaiting approval takes the next free slot of its route."""
    return {"post_id": post_id, "scheduled_at": iso(pipeline.approve(runtime, post_id))}


def reject(runtime: Runtime, post_id: int, reason: str | None = None) -> dict[str, Any]:
    """A post not yet published is never published."""
    return pipeline.reject(runtime, post_id, reason)


def unschedule(runtime: Runtime, post_id: int) -> dict[str, Any]:
    """A scheduled post goes back to awaiting approval."""
    return pipeline.unschedule(runtime, post_id)


def schedule_at(runtime: Runtime, post_id: int, at: str) -> dict[str, Any]:
    """Publish a post at `at` ('now', '+2h', '18:30', a date, in the route's time zone), whatever the slots say.
    The result has the slot in UTC and in the route's zone, and a note when `at` was read in a particular way."""
    post = get_post(runtime.store, post_id)
    route = route_of(runtime, post["route"])
    when, note = resolve_at(at, route.schedule.timezone)
    slot = iso(pipeline.reschedule_at(runtime, post_id, when))
    return {"post_id": post_id, "scheduled_at": slot, "local": in_zone(slot, route.schedule.timezone), "note": note}


def rewrite_again(runtime: Runtime, post_id: int) -> dict[str, Any]:
    """Send a post not yet published back for a new rewrite of its donor text (a rewrite job is queued)."""
    post = get_post(runtime.store, post_id)
    if (post["source"] or "").startswith("generate:"):
        raise ContentqError(f"post {post_id} is an auto-post written by its generate job; reject it instead")
    if post["state"] not in lifecycle.sources_of("rewrite_again"):
        raise ContentqError(
            f"post {post_id} is {post['state']}; only a rewritten post not yet published is rewritten again"
        )
    pipeline.refuse_if_parts_out(runtime.store, post_id, "rewritten again")
    refuse_if_delivered(runtime, post_id, "rewritten again")
    cancel_publish_job(runtime, post_id)
    moved = pipeline.advance(
        runtime, post_id, "rewrite_again", reason="rewrite requested again by the operator",
        scheduled_at=None, dispatched_at=None,
    )  # fmt: skip
    if not moved:
        raise ContentqError(f"post {post_id} changed meanwhile; look at `contentq posts show {post_id}`")
    return {"post_id": post_id, "rewrite_job": moved.then.get("rewrite_job")}


def text_to_edit(runtime: Runtime, post_id: int) -> str:
    """The post's current text (its rewrite, else the original), once it is known it may be edited."""
    post = get_post(runtime.store, post_id)
    if post["state"] not in EDITABLE:
        raise ContentqError(f"post {post_id} is {post['state']}; only posts not yet published can be edited")
    pipeline.refuse_if_parts_out(runtime.store, post_id, "edited")
    refuse_if_delivered(runtime, post_id)
    return str(post["rewrite_html"] if post["rewrite_html"] is not None else post["text_html"] or "")


def save_text(runtime: Runtime, post_id: int, html: str) -> dict[str, Any]:
    """Save an edited text (Telegram HTML) as the post's rewrite, once it is valid and fits the route.

    The result has the length in characters (UTF-16 units) and a note on how it will be sent."""
    problems = validate_html(html)
    if problems:
        raise ContentqError(
            "the edited text is not valid Telegram HTML: "
            + "; ".join(problems)
            + f"; run `contentq posts edit {post_id}` again"
        )
    store, settings = runtime.store, runtime.settings
    post = get_post(store, post_id)
    refuse_if_delivered(runtime, post_id)
    has_media = bool(store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ?", (post_id,)))
    limit = settings.text_limit
    length = visible_len_utf16(html)
    route = routes_config(runtime).routes.get(post["route"])
    split = route is None or route.long_text == "split"
    if length > limit and not split:
        raise ContentqError(
            f"the edited text is {length} characters, over Telegram's {limit}, and route {post['route']!r} has "
            'long_text = "truncate"; shorten it, or set long_text = "split" to send it as several messages'
        )
    if not html.strip() and not has_media:
        raise ContentqError("the edited text is empty and the post has no media; use `contentq posts reject` instead")
    states = ", ".join("?" for _ in EDITABLE)
    cursor = store.execute(
        f"UPDATE posts SET rewrite_html = ?, updated_at = ? WHERE id = ? AND state IN ({states})"
        f" AND ({pipeline.PARTS_OUT_SQL}) = 0",
        (html, iso(), post_id, *EDITABLE, post_id),
    )
    if cursor.rowcount != 1:
        pipeline.refuse_if_parts_out(store, post_id, "edited")
        raise ContentqError(
            f"post {post_id} changed state while you edited it; look at `contentq posts show {post_id}`"
        )
    audit.record(store, "post", str(post_id), "edited", f"text saved, {length} characters")
    note = ""
    if has_media and length > settings.caption_limit:
        note = f" (over the caption limit of {settings.caption_limit}: the text goes as its own message)"
    if length > limit:
        note += f" (over Telegram's {limit}: sent as {len(split_html(html, limit))} messages)"
    return {"post_id": post_id, "length": length, "note": note}


def refuse_if_delivered(runtime: Runtime, post_id: int, what: str = "edited") -> None:
    """A post already out on one of its destinations is not edited nor rewritten again: its versions would no
    longer match."""
    out = [d["destination"] for d in deliveries_of(runtime.store, post_id) if d["state"] in ("published", "publishing")]
    if out:
        raise ContentqError(
            f"post {post_id} cannot be {what}: it is out (or going out) on {', '.join(out)}. Retry its failed "
            f"deliveries as they are (`contentq jobs list --kind deliver`), or reject it and write a new post"
        )
