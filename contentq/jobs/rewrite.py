"""The `rewrite` job (queue rewrite, key = post id): collected → rewriting → rewritten, then what follows.

Outcomes: rewritten (the lifecycle's follow-ups then run: imagegen when the route adds images, then approval
or a slot, see contentq.flow.pipeline); filtered when the model says the post is an ad or off-topic, or the clean
rewriter leaves nothing of it; failed, with the admin told, when retrying cannot help (context window, refused
request, invalid output three times); re-enqueued for later without using a retry while the LLM circuit breaker
is open or the endpoint asks for a long wait.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

from contentq import lifecycle
from contentq.clock import iso, now, parse
from contentq.errors import ConfigError, DatabaseUnavailableError, FatalJobError, JobError, JobStopped, Reschedule
from contentq.flow import pipeline
from contentq.integrations.llm import (
    BreakerOpenError,
    ContextTooLongError,
    LLMFatalError,
    LLMWaitError,
    ProviderHoldError,
)
from contentq.rewrite.core import build_task as build_rewrite_task
from contentq.rewrite.core import load_route, rewriter_for
from contentq.rewrite.llm import InvalidModelOutputError, LLMRewriter, ModelRefusalError
from contentq.rewrite.usage import last_answered_at
from contentq.routes import Route
from contentq.runtime.context import JobContext, Runtime
from contentq.store.jobs import first_event_since_restart
from contentq.store.posts import get_post


def job_deadline(ctx: JobContext, started: float) -> float:
    """When model calls must be over: the queue's job timeout (RQ kills the job then) less a margin for the
    database work after the last call. Every LLM try and wait is bounded by it, so however many tries the
    worst case would take (3 answers × openai_call_attempts × openai_timeout + waits), no call is cut."""
    timeout = float(ctx.settings.policy(ctx.queue).timeout)
    margin = min(15.0, max(3.0, timeout * 0.1))
    return started + max(0.0, timeout - margin)


def job_started() -> float:
    """The `time.monotonic()` instant RQ started this job's timeout clock: before the handler's cold imports
    (the OpenAI SDK takes a second or more), which the deadline must count, or RQ kills the job mid-call."""
    started = time.monotonic()
    rq_job = get_current_job()
    began = getattr(rq_job, "started_at", None) if rq_job is not None else None
    if not isinstance(began, datetime):
        return started
    if began.tzinfo is None:
        began = began.replace(tzinfo=UTC)
    return started - max(0.0, (datetime.now(UTC) - began).total_seconds())


def _rewritable(post: dict[str, Any]) -> bool:
    """'rewriting' is a run that stopped mid-way; 'failed' (only without a rewrite) a failed rewrite tried again."""
    return post["state"] in ("collected", "rewriting") or (post["state"] == "failed" and post["rewrite_html"] is None)


def _fail_post(ctx: JobContext, post_id: int, reason: str) -> None:
    lifecycle.move(ctx.store, post_id, "rewrite_failed", reason=f"rewrite: {reason}")


_FATAL_EVENTS: list[tuple[type[FatalJobError], str]] = [
    (ModelRefusalError, "refused"),
    (ContextTooLongError, "context_too_long"),
    (InvalidModelOutputError, "invalid_output_final"),
]
"""The job-log event written for a fatal error of the rewriter, most specific first."""


def _record_fatal(ctx: JobContext, post_id: int, exc: FatalJobError) -> None:
    """The post fails with the reason; the admin hears of it once per post, or once in all for an endpoint
    that refuses every request (auth) or a configuration every post trips over."""
    reason = str(exc)
    for kind, event in _FATAL_EVENTS:
        if isinstance(exc, kind):
            extra = {"raw_output": exc.raw} if isinstance(exc, InvalidModelOutputError) else {}
            ctx.log(event, reason, level="error", **extra)
            break
    _fail_post(ctx, post_id, reason)
    if isinstance(exc, ConfigError):
        ctx.notify("rewrite-config", f"rewrites fail: {reason}", level="error")
    elif isinstance(exc, LLMFatalError) and exc.is_auth:
        ctx.notify("llm-auth", f"the LLM endpoint refuses contentq's requests: {reason}", level="error")
    else:
        ctx.notify(f"rewrite-failed:{post_id}", f"rewrite of post {post_id} failed: {reason}", level="error")


class LLMOutageError(FatalJobError):
    """The LLM endpoint stayed unavailable past the route's llm_patience: the post fails rather than waits on."""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _patience(ctx: JobContext, post_id: int, route: Route, wait: LLMWaitError) -> JobError:
    """The error to raise for a wait on the LLM: the wait itself (capped at what is left of the route's patience),
    or, once the post has waited llm_patience since its first wait, a fatal error with the post failed and the
    admin told once per outage (the outage is named by the endpoint's last answer)."""
    first = first_event_since_restart(ctx.store, ctx.job_id, "llm_waiting")
    patience = route.llm_patience_seconds
    if first is None:
        ctx.log("llm_waiting", f"{wait.reason}; the post fails after waiting {route.llm_patience} (llm_patience)",
                level="warning")  # fmt: skip
        first = iso()
    waited = (now() - parse(first)).total_seconds()
    if waited < patience:
        wait.delay = max(1.0, min(wait.delay, patience - waited))
        return wait
    reason = (
        f"the LLM endpoint has not answered for {_duration(waited)} (route {route.name} waits {route.llm_patience}, "
        f"llm_patience): {wait.reason}"
    )
    _fail_post(ctx, post_id, reason)
    ctx.log("llm_outage", reason, level="error")
    since = last_answered_at(ctx.store)
    when = since[:16].replace("T", " ") + " UTC" if since else "contentq began"
    ctx.notify(
        f"llm-outage:{since or 'never'}",
        f"the LLM endpoint has not answered since {when}: rewrites that waited longer than their route's "
        f"llm_patience fail (post {post_id} of route {route.name} first). Once it answers: "
        f"`contentq jobs retry --all-failed --queue rewrite`. Last error: {wait.reason}",
        level="error",
        once=True,
    )
    return LLMOutageError(f"{reason}; `contentq jobs retry {ctx.job_id}` once the endpoint answers")


def run(ctx: JobContext, post_id: int, **_: Any) -> dict[str, Any]:
    started = job_started()
    store = ctx.store
    post = get_post(store, post_id)  # NotFoundError: fatal
    state = post["state"]
    if state == "rewritten":
        # A previous run got this far and stopped before finishing: only the steps after it are missing.
        ctx.log("resumed", "post already rewritten; running the steps after the rewrite")
        load_route(ctx.settings, post["route"])  # ConfigError: fatal
        return {"post_id": post_id, **pipeline.follow_up(ctx.runtime, post_id, "rewritten", resumed=True)}
    if not _rewritable(post):
        ctx.log("skipped", f"post {post_id} is {state}: nothing to rewrite")
        return {"post_id": post_id, "skipped": state}

    try:
        route = load_route(ctx.settings, post["route"])
        rewriter = rewriter_for(ctx.runtime, route)
    except ConfigError as exc:
        _record_fatal(ctx, post_id, exc)
        raise
    if isinstance(rewriter, LLMRewriter):
        try:
            rewriter.client.check_breaker()  # open: BreakerOpenError, a Reschedule
        except BreakerOpenError as wait:
            if not ctx.tried_now():
                raise _patience(ctx, post_id, route, wait) from None
            ctx.log("trial", "tried now by the operator: one request goes through the open circuit breaker")
            rewriter.client.allow_trial()

    ctx.checkpoint("before the rewrite began")
    if not lifecycle.move(store, post_id, "rewrite_started"):
        ctx.log("skipped", f"post {post_id} changed state meanwhile")
        return {"post_id": post_id, "skipped": get_post(store, post_id)["state"]}

    task = build_rewrite_task(ctx.runtime, post, route, ctx.job_id, deadline=job_deadline(ctx, started))
    ctx.log(
        "rewriting",
        f"rewriter {rewriter.name}, limit {task.limit} ({'caption' if task.has_media else 'text'})",
        route=route.name,
    )
    try:
        result = rewriter.rewrite(task, ctx)
    except JobStopped:  # cancelled between two model calls: the post is where it was before this run
        lifecycle.move(store, post_id, "rewrite_stopped", reason="rewrite stopped: its job was cancelled")
        raise
    except Reschedule as exc:  # the endpoint asks for a wait, or the breaker is open
        lifecycle.move(store, post_id, "rewrite_postponed", reason=f"waiting: {exc}")
        if isinstance(exc, ProviderHoldError):
            ctx.notify("llm-hold", f"LLM calls paused: {exc}", level="error")
        if isinstance(exc, LLMWaitError):
            raise _patience(ctx, post_id, route, exc) from None
        raise
    except FatalJobError as exc:  # refused, too long, invalid output three times, request refused
        _record_fatal(ctx, post_id, exc)
        raise
    except DatabaseUnavailableError:
        raise  # the machine's trouble: the job runner waits it out and runs this job again, no try spent
    except Exception as exc:
        if ctx.is_last_attempt:
            _fail_post(ctx, post_id, str(exc))
        else:
            lifecycle.move(store, post_id, "rewrite_postponed", reason=f"retrying: {exc}")
        raise

    summary: dict[str, Any] = {
        "post_id": post_id,
        "rewriter": result.rewriter,
        "attempts": result.attempts,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost": round(result.cost, 6),
    }
    if result.skipped:
        lifecycle.move(store, post_id, "filtered", reason=f"rewrite: {result.skip_reason}")
        who = "the model" if result.rewriter == "llm" else f"the {result.rewriter} rewriter"
        ctx.log("filtered", f"{who} skipped the post: {result.skip_reason}")
        return {**summary, "state": "filtered", "reason": result.skip_reason}
    moved = lifecycle.move(
        store, post_id, "rewritten", then=True,
        rewrite_html=result.html, title=result.title, image_prompt=result.image_prompt,
        truncated=int(result.truncated), rewriter=result.rewriter,
    )  # fmt: skip
    if not moved:
        now_state = get_post(store, post_id)["state"]
        if now_state == "collected":  # the donor edited it meanwhile (contentq listen): rewrite the new text
            raise Reschedule(1, f"post {post_id} was edited by the donor during its rewrite; rewriting it again")
        ctx.log("discarded", f"post {post_id} left 'rewriting' while it was rewritten (cancelled?)", level="warning")
        return {**summary, "skipped": now_state}
    ctx.log("rewritten", f"{len(result.html)} characters" + (", truncated" if result.truncated else ""))
    then = pipeline.follow_up(ctx.runtime, post_id, "rewritten")  # its image, then approval or a slot
    return {**summary, "truncated": result.truncated, **then}


def on_failed(runtime: Runtime, job: dict[str, Any], reason: str) -> None:
    """The rewrite job ended failed (any cause, its worker's death included): the post is failed with the
    reason and the admin told, unless the job already settled it."""
    post_id = job["post_id"]
    if post_id is None:
        return
    if lifecycle.move(runtime.store, int(post_id), "rewrite_failed", reason=f"rewrite: {reason}"):
        runtime.notifier.notify(f"rewrite-failed:{post_id}", f"rewrite of post {post_id} failed: {reason}", "error")
