"""The `publish` job (queue publish, key = post id): scheduled → publishing → published.

Thin: the post's publication is `contentq.publish.publish_post`; waits come back as Reschedule (not due
yet, rate limit, flood wait, Telegram unreachable), a post that cannot be published as FatalJobError.
A failed publication restarted with `contentq jobs retry ID` runs this job again on the failed post.
"""

from __future__ import annotations

from typing import Any

from contentq.publish import publish_post
from contentq.runtime.context import FatalJobError, JobContext


def run(ctx: JobContext, post_id: int | None = None, now: bool = False, **_: Any) -> dict[str, Any]:
    target = post_id if post_id is not None else ctx.post_id
    if target is None:
        raise FatalJobError("a publish job needs a post id")
    return publish_post(ctx.runtime, int(target), ctx, last_attempt=ctx.is_last_attempt, force=now)
