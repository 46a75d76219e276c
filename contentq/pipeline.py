"""What happens to a post after each step. The publish area owns the decisions made here.

After the rewrite: a post whose image job is still queued or running waits for it (the post stays
`rewritten`), whether the route's images are "required" or "optional"; a failed image fails a post whose
route requires one, an optional one goes on without it;
a route with `approval = true` parks the post in `awaiting_approval` and tells the admin; otherwise the
post takes the next free slot of its route (`scheduled`). A slot within the dispatch horizon is handed to
the publish queue at once (with a delay up to the slot), so `asap` posts do not wait for cron.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from contentq.clock import iso, now, parse
from contentq.dispatch import DISPATCH_AHEAD_SECONDS, cancel_publish_job, dispatch_post
from contentq.errors import ConfigError, ContentqError
from contentq.routes import Route
from contentq.runtime.config import route_of
from contentq.runtime.context import Runtime
from contentq.schedule import earliest_for, next_free_slot
from contentq.store import Store
from contentq.store.jobs import ACTIVE
from contentq.store.posts import get_post, transition

log = logging.getLogger("contentq.pipeline")

SCHEDULABLE = ("rewritten", "awaiting_approval")
"""States a post is scheduled from (approval, or no approval needed)."""


def _has_image(runtime: Runtime, post_id: int) -> bool:
    return bool(
        runtime.store.scalar(
            "SELECT 1 FROM media WHERE post_id = ? AND origin = 'generated' AND path IS NOT NULL", (post_id,)
        )
    )


def _image_job_status(runtime: Runtime, post_id: int) -> str | None:
    status = runtime.store.scalar(
        "SELECT status FROM jobs WHERE kind = 'imagegen' AND key = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (str(post_id),),
    )
    return None if status is None else str(status)


def fail_post(runtime: Runtime, post_id: int, from_states: str | Iterable[str], reason: str) -> bool:
    moved = transition(runtime.store, post_id, from_states, "failed", state_reason=reason[:500])
    if moved:
        runtime.notifier.notify(f"post-failed:{post_id}", f"post {post_id} failed: {reason}", level="error")
    return moved


def on_rewritten(runtime: Runtime, post_id: int) -> str:
    """Called by the rewrite job once a post is `rewritten`; returns the post's new state."""
    post = get_post(runtime.store, post_id)
    if post["state"] != "rewritten":
        return str(post["state"])
    route = route_of(runtime, post["route"])
    if route.images != "none" and not _has_image(runtime, post_id):
        status = _image_job_status(runtime, post_id)
        if route.images == "required":
            if status is None:
                fail_post(
                    runtime, post_id, "rewritten",
                    f"route {route.name!r} requires an image but none was requested (no image prompt from the "
                    "rewrite, or image generation is not installed); set images = \"optional\" or use the card "
                    "backend",
                )  # fmt: skip
                return str(get_post(runtime.store, post_id)["state"])
            return "rewritten"  # the image job calls on_image_done when it is done
        if status in ACTIVE:
            # optional images wait too while their job is queued or running: publish runs before imagegen, so
            # the post would go out without its image; on_image_done(ok=False) lets it go on without one
            return "rewritten"
        # optional with no image job (no image prompt) or with the job over: go on without the image
    return proceed(runtime, post_id, route)


def on_image_done(runtime: Runtime, post_id: int, ok: bool) -> str | None:
    """Called by image generation when a post's image is attached (ok) or failed for good (not ok).

    Only a post waiting for its image (still `rewritten`) moves on; returns its new state, or None.
    """
    post = get_post(runtime.store, post_id)
    if post["state"] != "rewritten":
        return None
    route = route_of(runtime, post["route"])
    if not ok and route.images == "required":
        fail_post(
            runtime, post_id, "rewritten",
            f"image generation failed and route {route.name!r} requires an image; "
            f"`contentq jobs list --kind imagegen` shows why",
        )  # fmt: skip
        return str(get_post(runtime.store, post_id)["state"])
    return proceed(runtime, post_id, route)


def proceed(runtime: Runtime, post_id: int, route: Route) -> str:
    """Approval when the route wants it, else the next free slot."""
    if route.approval:
        if transition(runtime.store, post_id, "rewritten", "awaiting_approval", target=route.target):
            post = get_post(runtime.store, post_id)
            title = f" “{post['title']}”" if post.get("title") else ""
            runtime.notifier.notify(
                f"approval:{post_id}",
                f"post {post_id}{title} of route {route.name} awaits approval: `contentq posts show {post_id}`, "
                f"then `contentq posts approve {post_id}` or `contentq posts reject {post_id}`",
                level="info",
            )
        return str(get_post(runtime.store, post_id)["state"])
    try:
        scheduled = schedule_post(runtime, post_id, from_states=("rewritten",))
    except ConfigError as exc:  # a schedule that can take no post: say so instead of retrying the rewrite
        fail_post(runtime, post_id, "rewritten", f"cannot be scheduled: {exc}")
        return str(get_post(runtime.store, post_id)["state"])
    return "scheduled" if scheduled is not None else str(get_post(runtime.store, post_id)["state"])


def schedule_post(
    runtime: Runtime,
    post_id: int,
    *,
    from_states: Iterable[str] = SCHEDULABLE,
    at: datetime | None = None,
    current: datetime | None = None,
    dispatch: bool = True,
) -> datetime | None:
    """Give the post its slot (the next free one, or `at`) in one write transaction; None if its state
    was not one of `from_states`. A slot within the dispatch horizon is handed to the publish queue now."""
    store = runtime.store
    states = list(from_states)
    with store.transaction():
        post = store.one("SELECT * FROM posts WHERE id = ?", (post_id,))
        if post is None or post["state"] not in states:
            return None
        route = route_of(runtime, post["route"])
        if at is None:
            slot = next_free_slot(
                store, route,
                not_before=earliest_for(route.schedule, post["posted_at"], current),
                exclude_post_id=post_id,
            )  # fmt: skip
        else:
            slot = at
        store.execute(
            "UPDATE posts SET state = 'scheduled', scheduled_at = ?, target = ?, dispatched_at = NULL,"
            " state_reason = NULL, updated_at = ? WHERE id = ?",
            (iso(slot), route.target, iso(), post_id),
        )
    log.info("post %s scheduled for %s (route %s)", post_id, iso(slot), route.name)
    if dispatch and (slot - now()).total_seconds() <= DISPATCH_AHEAD_SECONDS:
        try:
            dispatch_post(runtime, post_id)
        except ContentqError as exc:  # Redis down: `contentq dispatch` (cron) picks it up later
            log.warning("post %s scheduled but not handed to the publish queue yet: %s", post_id, exc)
    return slot


def approve(runtime: Runtime, post_id: int) -> datetime:
    post = get_post(runtime.store, post_id)
    if post["state"] != "awaiting_approval":
        raise ContentqError(f"post {post_id} is {post['state']}, not awaiting approval")
    slot = schedule_post(runtime, post_id, from_states=("awaiting_approval",))
    if slot is None:
        raise ContentqError(f"post {post_id} changed while approving it; look at `contentq posts show {post_id}`")
    return slot


REJECTABLE = ("awaiting_approval", "rewritten", "scheduled", "failed")


def reject(runtime: Runtime, post_id: int, reason: str | None = None) -> dict[str, Any]:
    post = get_post(runtime.store, post_id)
    if post["state"] not in REJECTABLE:
        raise ContentqError(f"post {post_id} is {post['state']}; only posts not yet published can be rejected")
    cancel_publish_job(runtime, post_id)
    if not transition(
        runtime.store, post_id, REJECTABLE, "rejected", state_reason=reason or "rejected by the operator"
    ):
        raise ContentqError(f"post {post_id} changed while rejecting it; look at `contentq posts show {post_id}`")
    return get_post(runtime.store, post_id)


def unschedule(runtime: Runtime, post_id: int) -> dict[str, Any]:
    """Take a post off the schedule: it waits in `awaiting_approval` for the operator."""
    post = get_post(runtime.store, post_id)
    if post["state"] != "scheduled":
        raise ContentqError(f"post {post_id} is {post['state']}, not scheduled")
    cancel_publish_job(runtime, post_id)
    if not transition(
        runtime.store, post_id, "scheduled", "awaiting_approval",
        scheduled_at=None, dispatched_at=None, state_reason="unscheduled by the operator",
    ):  # fmt: skip
        raise ContentqError(f"post {post_id} changed while unscheduling it (being published?); try again")
    return get_post(runtime.store, post_id)


PARTS_OUT_SQL = (
    "SELECT COUNT(*) FROM sends s JOIN posts p ON p.id = s.post_id"
    " WHERE s.post_id = ? AND s.round = p.publish_round AND s.status IN ('sent', 'attempting')"
)
"""Parts of a post's current publication that are in the channel, or may be."""


def parts_out(store: Store, post_id: int) -> int:
    return int(store.scalar(PARTS_OUT_SQL, (post_id,)) or 0)


def refuse_if_parts_out(store: Store, post_id: int, action: str) -> None:
    """A post half out in the channel is not changed: the rest would not match what is visible."""
    count = parts_out(store, post_id)
    if count:
        raise ContentqError(
            f"post {post_id} cannot be {action}: {count} part(s) of it are (or may be) in the channel already. "
            f"Either complete the publication as it is with `contentq jobs retry` on its publish job (see "
            f"`contentq posts show {post_id}` and `contentq jobs list --kind publish`), or delete its messages in "
            f"the channel by hand and `contentq posts reject {post_id}`"
        )


def not_schedulable(post_id: int, state: str) -> str:
    """Why a post in `state` cannot be given a publishing time, and what to do instead."""
    if state in ("collected", "rewriting"):
        return (
            f"post {post_id} is {state}: it has no rewrite yet, so there is nothing to publish. Once rewritten it is "
            f"scheduled by its route's rules and can then be moved (`contentq rewrite {post_id}` queues its rewrite "
            "now; a worker on the rewrite queue runs it)"
        )
    if state == "publishing":
        return f"post {post_id} is being published right now; `contentq posts show {post_id}` shows how it went"
    if state == "published":
        return f"post {post_id} is published already; `contentq posts show {post_id}` shows where"
    return f"post {post_id} is {state}: it is not to be published (`contentq posts show {post_id}` says why)"


def reschedule_at(runtime: Runtime, post_id: int, at: datetime) -> datetime:
    """Put a post (not yet published) at a fixed time, whatever its slot rules say."""
    post = get_post(runtime.store, post_id)
    refuse_if_parts_out(runtime.store, post_id, "rescheduled")
    states = ("rewritten", "awaiting_approval", "scheduled", "failed")
    if post["state"] not in states:
        raise ContentqError(not_schedulable(post_id, post["state"]))
    if post["state"] == "rewritten" and post["rewrite_html"] is None:
        raise ContentqError(f"post {post_id} has no rewrite yet")
    cancel_publish_job(runtime, post_id)
    slot = schedule_post(runtime, post_id, from_states=states, at=at)
    if slot is None:
        raise ContentqError(f"post {post_id} changed meanwhile; look at `contentq posts show {post_id}`")
    return slot


def due_in_seconds(post: dict[str, Any], current: datetime | None = None) -> float:
    if not post.get("scheduled_at"):
        return 0.0
    return (parse(post["scheduled_at"]) - (current or now())).total_seconds()
