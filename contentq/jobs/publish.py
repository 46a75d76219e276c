"""The `publish` job (queue publish, key = post id): scheduled → publishing → published.

Thin: the post's publication is `contentq.publish.publish_post`; waits come back as Reschedule (not due
yet, rate limit, flood wait, Telegram unreachable), a post that cannot be published as FatalJobError; the
runner (`contentq.runtime.execute`) maps both.
A failed publication restarted with `contentq jobs retry ID` runs this job again on the failed post.
"""

from __future__ import annotations

import json
from typing import Any

from contentq import lifecycle
from contentq.errors import FatalJobError, NotFoundError
from contentq.publish.core import publish_post
from contentq.publish.settle_failed import SETTLE_FROM, settle_publication
from contentq.runtime.context import JobContext, Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.posts import get_post


def run(ctx: JobContext, post_id: int | None = None, now: bool = False, **_: Any) -> dict[str, Any]:
    target = post_id if post_id is not None else ctx.post_id
    if target is None:
        raise FatalJobError("a publish job needs a post id")
    return publish_post(ctx.runtime, int(target), ctx, last_attempt=ctx.is_last_attempt, force=now)


def on_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """The publish job ended failed with its post still on the way: a `settle` job looks at the channel (in the
    Telegram worker: a session is used by one process only) and makes the post published or failed."""
    post_id = job["post_id"] if job["post_id"] is not None else json.loads(job["payload"] or "{}").get("post_id")
    if post_id is None:
        return
    try:
        if get_post(runtime.store, int(post_id))["state"] not in SETTLE_FROM:
            return
    except NotFoundError:
        return  # the post is gone (purged): nothing to settle
    enqueue(runtime, "settle", str(post_id), {"post_id": int(post_id), "reason": reason}, post_id=int(post_id),
            parent_id=job["id"])  # fmt: skip


def settle(ctx: JobContext, post_id: int, reason: str = "the publish job failed", **_: Any) -> dict[str, Any]:
    return settle_publication(ctx.runtime, int(post_id), reason, ctx, last_attempt=ctx.is_last_attempt)


def on_settle_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """Even the settlement failed: the post is failed with both reasons, and the admin is told to look."""
    post_id = job["post_id"]
    first = json.loads(job["payload"] or "{}").get("reason", "the publish job failed")
    why = f"{first}; settling it failed too ({reason}): check the channel before `contentq jobs retry`"
    if post_id is not None and lifecycle.move(runtime.store, int(post_id), "publish_failed",
                                              reason=f"publish: {why}", only_from=SETTLE_FROM):  # fmt: skip
        runtime.notifier.notify(f"publish-failed:{post_id}", f"publishing post {post_id} failed: {why}", "error")
