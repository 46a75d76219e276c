"""The `generate` job (queue rewrite, key = route name): an auto-posting rule's original post.

Creates the due time's post (once), has the LLM write it, then hands it on like a rewritten post: the
`rewritten` move's follow-ups (contentq.flow.pipeline) ask for its image when the route adds one, then hold it for
approval or give it the next free slot.
"""

from __future__ import annotations

from typing import Any

from contentq import lifecycle
from contentq.clock import parse
from contentq.errors import ConfigError, DatabaseUnavailableError, FatalJobError, JobStopped, Reschedule
from contentq.flow import pipeline
from contentq.flow.rules import record_outcome, rule_post, write_original
from contentq.runtime.config import route_of
from contentq.runtime.context import JobContext, Runtime
from contentq.store.posts import get_post


def _record_failure(ctx: JobContext, route: str, post_id: int, reason: str) -> None:
    record_outcome(ctx.runtime, route, error=reason)
    pipeline.advance(ctx.runtime, post_id, "write_failed", reason=f"generate: {reason}")


def run(ctx: JobContext, route: str, due: str, **_: Any) -> dict[str, Any]:
    try:
        route_cfg = route_of(ctx.runtime, route)
    except ConfigError as exc:  # fatal: the runner fails the job without a retry
        record_outcome(ctx.runtime, route, error=str(exc))
        raise
    if route_cfg.generate is None:
        record_outcome(ctx.runtime, route, error="the route has no [generate] section any more")
        raise FatalJobError(f"route {route!r} has no [generate] section")
    due_at = parse(due)
    post = rule_post(ctx.runtime, route_cfg, due_at)
    post_id = post["id"]
    if ctx.post_id != post_id:
        ctx.post_id = post_id
        ctx.store.execute("UPDATE jobs SET post_id = ? WHERE id = ?", (post_id, ctx.job_id))
    if post["state"] == "rewritten":
        ctx.log("resumed", f"post {post_id} was written by an earlier run; continuing after it")
        return {"post_id": post_id, **pipeline.follow_up(ctx.runtime, post_id, "rewritten", resumed=True)}
    if post["state"] != "rewriting":
        ctx.log("skipped", f"the post of {due} is already {post['state']} (post {post_id})")
        return {"post_id": post_id, "skipped": post["state"]}

    ctx.log("generating", f"route {route}, due {due}, topic: {route_cfg.generate.topic[:200]}", post_id=post_id)
    try:
        written = write_original(ctx.runtime, route_cfg, post_id, due_at, ctx)
    except JobStopped:  # cancelled between two model calls: the operator does not want this post
        lifecycle.move(ctx.store, post_id, "write_stopped", reason="generate stopped: its job was cancelled")
        raise
    except (Reschedule, DatabaseUnavailableError):  # a wait, not a failure (the runner waits out the database)
        raise
    except FatalJobError as exc:  # refused request, bad configuration, unusable answer
        ctx.notify(f"generate-failed:{route}", f"auto-post of route {route} failed: {exc}", level="error")
        _record_failure(ctx, route, post_id, str(exc))
        raise
    except Exception as exc:
        record_outcome(ctx.runtime, route, error=f"{type(exc).__name__}: {exc}")
        if ctx.is_last_attempt:
            pipeline.advance(ctx.runtime, post_id, "write_failed", reason=f"generate: {exc}")
        raise

    if "skip" in written:
        lifecycle.move(ctx.store, post_id, "nothing_written", reason=f"generate: {written['skip']}")
        record_outcome(ctx.runtime, route, error=f"the model wrote nothing: {written['skip']}")
        ctx.log("skipped", written["skip"], level="warning")
        return {"post_id": post_id, "state": "cancelled", "reason": written["skip"]}
    moved = lifecycle.move(
        ctx.store, post_id, "rewritten", then=True,
        rewrite_html=written["html"], title=written["title"], image_prompt=written["image_prompt"],
        truncated=int(written["truncated"]), rewriter="generate",
    )  # fmt: skip
    if not moved:
        return {"post_id": post_id, "skipped": get_post(ctx.store, post_id)["state"]}
    record_outcome(ctx.runtime, route, error=None)
    ctx.log("generated", f"post {post_id}: {len(written['html'])} characters", title=written["title"])
    then = pipeline.follow_up(ctx.runtime, post_id, "rewritten")  # its image, then approval or a slot
    return {"tokens_in": written["tokens_in"], "tokens_out": written["tokens_out"], "post_id": post_id, **then}


def on_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """The generate job ended failed (a timeout, its worker's death): its post, still `rewriting`, is failed
    with the reason and the admin told, unless the job already failed it."""
    if job["post_id"] is not None:
        pipeline.advance(runtime, int(job["post_id"]), "write_failed", reason=f"generate: {reason}")
