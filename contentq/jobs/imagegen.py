"""imagegen (queue imagegen, key = post id): make the post's image and attach it, then let the pipeline go on.

Attempts are the queue's (CONTENTQ_IMAGEGEN_ATTEMPTS, 3 by default); a content-policy refusal, a non-image
answer or a bad setup fails at once. When the job ends failed for good (its worker's death included) the
pipeline is told by `on_failed` (on_image_done False), so a post whose route makes the image optional is
published without it.
"""

from __future__ import annotations

from typing import Any

from contentq.errors import FatalJobError, NotFoundError
from contentq.flow import pipeline
from contentq.images.service import describe_failure, generate_post_image
from contentq.runtime.context import JobContext, Runtime


def run(
    ctx: JobContext, post_id: int | None = None, prompt: str | None = None, backend: str | None = None, **_: Any
) -> dict[str, Any]:
    pid = post_id if post_id is not None else ctx.post_id
    if pid is None:
        raise FatalJobError("an imagegen job needs a post id (payload post_id or the job's post)")
    ctx.log("attempt", f"attempt {ctx.attempt} of {ctx.max_attempts} for post {pid}", backend=backend)
    made = image_made_by_this_job(ctx, int(pid))
    if made is not None:  # an earlier attempt attached it and failed after: do not pay for another image
        ctx.log("image_reused", f"image {made['id']} was attached by an earlier attempt of this job")
        return {"image_id": made["id"], "post_id": int(pid), "attached": True, "reused": True,
                "post_state": pipeline.on_image_done(ctx.runtime, int(pid), True)}  # fmt: skip
    ctx.checkpoint("before the image was asked for")
    try:
        result = generate_post_image(ctx.runtime, int(pid), prompt=prompt, backend=backend, log=ctx)
    except NotFoundError as exc:  # fatal; no post to go on with
        ctx.log("attempt_failed", str(exc), level="error")
        raise
    except FatalJobError as exc:  # refused, not an image, bad setup: on_failed lets the post go on without one
        ctx.log("attempt_failed", f"not retried: {describe_failure(exc)}", level="error")
        raise
    except Exception as exc:
        last = ctx.is_last_attempt
        ctx.log(
            "attempt_failed",
            describe_failure(exc) + ("; no attempts left" if last else "; will retry"),
            level="error" if last else "warning",
        )
        raise  # on the last attempt, on_failed lets the post go on without its image
    if result["attached"]:
        state = pipeline.on_image_done(ctx.runtime, int(pid), True)
        result["post_state"] = state
    return result


def image_made_by_this_job(ctx: JobContext, post_id: int) -> dict[str, Any] | None:
    """The generated image attached to the post since this job was created, on a later attempt."""
    if ctx.attempt <= 1:
        return None
    return ctx.store.one(
        "SELECT m.id FROM media AS m JOIN jobs AS j ON j.id = ? WHERE m.origin = 'generated' AND m.post_id = ?"
        " AND m.created_at >= j.created_at ORDER BY m.id DESC LIMIT 1",
        (ctx.job_id, post_id),
    )


def on_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """The imagegen job ended failed, by an error or, found by reconcile, by its worker's death on the last try:
    the post waiting for its image goes on without it, or fails when its route requires one."""
    if job["post_id"] is not None:
        pipeline.on_image_done(runtime, int(job["post_id"]), False)
