"""What happens to a post after each move, and what an operator does to its place in the queue.

The lifecycle's table (`contentq.lifecycle`) names what follows each move (`Move.then`); `advance` makes the
move and runs them, here, in order (STEPS). After `rewritten`: the image job when the route adds an image, then
the next step (`on_rewritten`). A post whose image job is still queued or running waits for it (the post stays
`rewritten`), whether the route's images are "required" or "optional"; a failed image fails a post whose route
requires one, an optional one goes on without it; a route with `approval = true` holds the post in
`awaiting_approval` and the admin is told; otherwise the post takes the next free slot of its route
(`scheduled`). A slot within the dispatch horizon is handed to the publish queue at once (with a delay up to the
slot), so `asap` posts do not wait for cron.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contentq import actors, lifecycle
from contentq.clock import iso, now, parse
from contentq.errors import ConfigError, ContentqError
from contentq.flow.dispatch import DISPATCH_AHEAD_SECONDS, cancel_publish_job, dispatch_post
from contentq.flow.schedule import earliest_for, next_free_slot
from contentq.routes import Route
from contentq.runtime.config import route_of
from contentq.runtime.context import Runtime
from contentq.runtime.kinds import KINDS
from contentq.runtime.tracking import enqueue
from contentq.store import Store
from contentq.store.jobs import ACTIVE
from contentq.store.posts import get_post, has_generated_image, image_job_status

log = logging.getLogger("contentq.flow.pipeline")


@dataclass
class Moved:
    """What `advance` did: truthy when the post moved; `then` holds what its follow-ups report (a job id, the
    state the post went on to)."""

    moved: bool
    then: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.moved


@dataclass(frozen=True)
class After:
    """What a follow-up is told: the post, the move it made, and whether a stopped run is being resumed."""

    runtime: Runtime
    post_id: int
    event: str
    reason: str | None = None
    resumed: bool = False


def advance(
    runtime: Runtime,
    post_id: int,
    event: str,
    *,
    reason: str | None = None,
    only_from: str | Iterable[str] | None = None,
    **fields: Any,
) -> Moved:
    """Move the post by `event` (a compare-and-set, see `lifecycle.move`), then run what follows the move."""
    if not lifecycle.move(runtime.store, post_id, event, reason=reason, only_from=only_from, then=True, **fields):
        return Moved(False)
    return Moved(True, follow_up(runtime, post_id, event, reason=reason))


def follow_up(
    runtime: Runtime, post_id: int, event: str, *, reason: str | None = None, resumed: bool = False
) -> dict[str, Any]:
    """Run the follow-ups of `event` for a post that made that move: after `advance`, after a `lifecycle.move_in`
    in the caller's transaction, or again (`resumed`) for a job that stopped between the move and them."""
    after = After(runtime, post_id, event, reason, resumed)
    out: dict[str, Any] = {}
    for name in lifecycle.spec(event).then:
        out.update(STEPS[name](after))
    return out


# -- the follow-ups (lifecycle.FOLLOW_UPS says what each does) -------------------------------------------


def _image_job(after: After) -> dict[str, Any]:
    runtime, post_id = after.runtime, after.post_id
    post = get_post(runtime.store, post_id)
    route = route_of(runtime, post["route"])
    wants_image = route.images != "none" and (bool(post["image_prompt"]) or route.image_backend == "card")
    if not wants_image or "imagegen" not in KINDS:
        return {}
    if after.resumed and image_job_status(runtime.store, post_id) is not None:
        return {}  # the run that stopped had asked for it already
    job = enqueue(runtime, "imagegen", str(post_id), {"post_id": post_id}, post_id=post_id, parent_id=actors.job_id())
    return {"imagegen_job": job["id"]}


def _next_step(after: After) -> dict[str, Any]:
    return {"state": on_rewritten(after.runtime, after.post_id)}  # looked up here: tests stand in for it


def _approval_notice(after: After) -> dict[str, Any]:
    post_id = after.post_id
    post = get_post(after.runtime.store, post_id)
    title = f" “{post['title']}”" if post.get("title") else ""
    after.runtime.notifier.notify(
        f"approval:{post_id}",
        f"post {post_id}{title} of route {post['route']} awaits approval: `contentq posts show {post_id}`, "
        f"then `contentq posts approve {post_id}` or `contentq posts reject {post_id}`",
        level="info",
    )
    return {}


def _dispatch(after: After) -> dict[str, Any]:
    post = get_post(after.runtime.store, after.post_id)
    if post["state"] != "scheduled" or not post["scheduled_at"]:
        return {}
    if (parse(post["scheduled_at"]) - now()).total_seconds() > DISPATCH_AHEAD_SECONDS:
        return {}  # `contentq dispatch` (cron) hands it over nearer its slot
    try:
        handed = dispatch_post(after.runtime, after.post_id)
    except ContentqError as exc:  # Redis down: `contentq dispatch` (cron) picks it up later
        log.warning("post %s scheduled but not handed to the publish queue yet: %s", after.post_id, exc)
        return {}
    return {"publish_job": handed["job"]} if handed else {}


def _rewrite_job(after: After) -> dict[str, Any]:
    post_id = after.post_id
    job = enqueue(after.runtime, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id,
                  parent_id=actors.job_id())  # fmt: skip
    return {"rewrite_job": job["id"]}


def _tell_admin(after: After) -> dict[str, Any]:
    post_id = after.post_id
    after.runtime.notifier.notify(f"post-failed:{post_id}", f"post {post_id} failed: {after.reason}", level="error")
    return {}


STEPS: dict[str, Callable[[After], dict[str, Any]]] = {
    "image_job": _image_job,
    "next_step": _next_step,
    "approval_notice": _approval_notice,
    "dispatch": _dispatch,
    "rewrite_job": _rewrite_job,
    "tell_admin": _tell_admin,
}
"""The follow-ups the lifecycle's table names, by name."""
if set(STEPS) != set(lifecycle.FOLLOW_UPS):
    raise AssertionError(f"follow-ups declared {sorted(lifecycle.FOLLOW_UPS)}, run here {sorted(STEPS)}")


# -- after the rewrite -----------------------------------------------------------------------------------


def on_rewritten(runtime: Runtime, post_id: int) -> str:
    """Called by the rewrite job once a post is `rewritten`; returns the post's new state."""
    post = get_post(runtime.store, post_id)
    if post["state"] != "rewritten":
        return str(post["state"])
    route = route_of(runtime, post["route"])
    if route.images != "none" and not has_generated_image(runtime.store, post_id):
        status = image_job_status(runtime.store, post_id)
        if route.images == "required":
            if status is None:
                why = (
                    f"route {route.name!r} requires an image but none was requested (no image prompt from the "
                    'rewrite, or image generation is not installed); set images = "optional" or use the card backend'
                )
                advance(runtime, post_id, "image_failed", reason=why)
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
        why = (
            f"image generation failed and route {route.name!r} requires an image; "
            "`contentq jobs list --kind imagegen` shows why"
        )
        advance(runtime, post_id, "image_failed", reason=why)
        return str(get_post(runtime.store, post_id)["state"])
    return proceed(runtime, post_id, route)


def proceed(runtime: Runtime, post_id: int, route: Route) -> str:
    """Approval when the route wants it, else the next free slot."""
    if route.approval:
        advance(runtime, post_id, "held", target=route.target)
        return str(get_post(runtime.store, post_id)["state"])
    try:
        scheduled = schedule_post(runtime, post_id, event="scheduled")
    except ConfigError as exc:  # a schedule that can take no post: say so instead of retrying the rewrite
        advance(runtime, post_id, "unschedulable", reason=f"cannot be scheduled: {exc}")
        return str(get_post(runtime.store, post_id)["state"])
    return "scheduled" if scheduled is not None else str(get_post(runtime.store, post_id)["state"])


def schedule_post(
    runtime: Runtime,
    post_id: int,
    *,
    event: str = "scheduled",
    at: datetime | None = None,
    current: datetime | None = None,
    dispatch: bool = True,
) -> datetime | None:
    """Give the post its slot (the next free one, or `at`) and move it by `event` (scheduled, approved,
    rescheduled, publish_requested) in one write transaction; None if it was in no state the event starts from.
    Then the event's follow-ups (without `dispatch`: none): a slot within the dispatch horizon is handed to the
    publish queue now."""
    if lifecycle.spec(event).target != "scheduled":
        raise lifecycle.IllegalMove(f"{event!r} does not schedule a post")
    store = runtime.store
    states = lifecycle.sources_of(event)
    with store.transaction() as conn:
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
        lifecycle.move_in(conn, post_id, event, then=True, scheduled_at=iso(slot), target=route.target,
                          dispatched_at=None)  # fmt: skip
    log.info("post %s scheduled for %s (route %s)", post_id, iso(slot), route.name)
    if dispatch:
        follow_up(runtime, post_id, event)
    return slot


def approve(runtime: Runtime, post_id: int) -> datetime:
    post = get_post(runtime.store, post_id)
    if post["state"] != "awaiting_approval":
        raise ContentqError(f"post {post_id} is {post['state']}, not awaiting approval")
    slot = schedule_post(runtime, post_id, event="approved")
    if slot is None:
        raise ContentqError(f"post {post_id} changed while approving it; look at `contentq posts show {post_id}`")
    return slot


def reject(runtime: Runtime, post_id: int, reason: str | None = None) -> dict[str, Any]:
    post = get_post(runtime.store, post_id)
    if post["state"] not in lifecycle.sources_of("rejected"):
        raise ContentqError(f"post {post_id} is {post['state']}; only posts not yet published can be rejected")
    cancel_publish_job(runtime, post_id)
    if not advance(runtime, post_id, "rejected", reason=reason or "rejected by the operator"):
        raise ContentqError(f"post {post_id} changed while rejecting it; look at `contentq posts show {post_id}`")
    return get_post(runtime.store, post_id)


def unschedule(runtime: Runtime, post_id: int) -> dict[str, Any]:
    """Take a post off the schedule: it waits in `awaiting_approval` for the operator."""
    post = get_post(runtime.store, post_id)
    if post["state"] != "scheduled":
        raise ContentqError(f"post {post_id} is {post['state']}, not scheduled")
    cancel_publish_job(runtime, post_id)
    if not advance(
        runtime, post_id, "unscheduled", reason="unscheduled by the operator", scheduled_at=None, dispatched_at=None
    ):
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
    if post["state"] not in lifecycle.sources_of("rescheduled"):
        raise ContentqError(not_schedulable(post_id, post["state"]))
    if post["state"] == "rewritten" and post["rewrite_html"] is None:
        raise ContentqError(f"post {post_id} has no rewrite yet")
    cancel_publish_job(runtime, post_id)
    slot = schedule_post(runtime, post_id, event="rescheduled", at=at)
    if slot is None:
        raise ContentqError(f"post {post_id} changed meanwhile; look at `contentq posts show {post_id}`")
    return slot


def due_in_seconds(post: dict[str, Any], current: datetime | None = None) -> float:
    if not post.get("scheduled_at"):
        return 0.0
    return (parse(post["scheduled_at"]) - (current or now())).total_seconds()
