"""The JSON API under /api/: what the pages do, for scripts (bearer token) and the pages' own JavaScript.

Its contract is exact: every answer an operation can give is in the OpenAPI document with its body model
(contentq/web/models.py; one Error model for every 4xx and 503), parameters carry the types, ranges and
patterns the server enforces, a refusal because of a job's or post's state is a 409, and /api/events is
declared as the text/event-stream it is. tests/test_web_contract.py runs Schemathesis against it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import Field
from sse_starlette import EventSourceResponse

from contentq.clock import iso
from contentq.ops.metrics import exposition
from contentq.ops.stats import collect_stats, parse_since
from contentq.review.posts import post_json
from contentq.runtime import queues
from contentq.runtime.bulk import JobFilter
from contentq.web import actions, events, newjob, views
from contentq.web import models as m
from contentq.web.deps import RT, csrf_guard, get_web
from contentq.web.models import DURATION, ID_MAX, READ, WRITE, Body, errors

BEARER = HTTPBearer(
    auto_error=False,  # the guard in app.py checks the token (or the session cookie) and answers 401
    description="The panel's token: `contentq web token` prints it. (The panel's own pages use their session.)",
)
"""Declares the bearer scheme in the OpenAPI document: Swagger UI's "Authorize" then sends the token."""

router = APIRouter(prefix="/api", dependencies=[Depends(csrf_guard), Security(BEARER)])

JobId = Annotated[str, Path(min_length=1, max_length=200)]
PostId = Annotated[int, Path(ge=1, le=ID_MAX)]
QueueName = Annotated[m.Queue, Path(description="A queue: " + ", ".join(queues.QUEUES))]
Limit = Annotated[int, Query(ge=1, le=views.PAGE_MAX)]
Text = Annotated[str | None, Query(max_length=200)]
Window = Annotated[str | None, Query(pattern=DURATION, description="A window: 90s, 15m, 24h, 7d, 2w.")]


class NewJob(Body):
    kind: Literal["collect", "rewrite", "publish", "settle", "generate", "imagegen", "noop"] = Field(
        description="collect, generate, noop take a key; rewrite, publish, imagegen, settle work on a post"
    )
    key: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
        description="What the job works on: a source, a route; for rewrite, publish, imagegen, settle the post id",
    )  # fmt: skip
    payload: dict[str, Any] = Field(default_factory=dict)
    post_id: m.Id | None = None
    delay_s: float | None = Field(None, ge=0, le=3.15e9, description="Run it this many seconds from now.")
    queue: m.Queue | None = None


class Reason(Body):
    reason: str | None = Field(None, max_length=2000)


class Edit(Body):
    html: str = Field(max_length=200_000, description="The new text, Telegram HTML.")


class At(Body):
    at: str = Field(
        max_length=100, pattern=r"^\S(.*\S)?$",
        description="'now', '+2h', '18:30', '2025-06-01 18:30' (route time) or ISO.",
    )  # fmt: skip


# -- jobs ---------------------------------------------------------------------------------------------


@router.get("/jobs", summary="List jobs, newest first (filters, cursor pagination)", responses=errors(*READ))
def list_jobs(
    rt: RT,
    status: Annotated[m.Status | None, Query()] = None,
    queue: Annotated[m.Queue | None, Query()] = None,
    kind: Text = None,
    since: Window = None,
    post_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    limit: Limit = 50,
    cursor: Annotated[
        str | None, Query(pattern=views.CURSOR, description="The next_cursor of the page before.")
    ] = None,
) -> m.JobPage:
    return m.JobPage.model_validate(
        views.jobs_page(
            rt, status=status, queue=queue, kind=kind, since=since, post_id=post_id, limit=limit, cursor=cursor
        )
    )


@router.post(
    "/jobs", status_code=201, summary="Enqueue a job (as the pipeline does)", responses=errors(*WRITE, 400, 404, 409)
)
def create_job(rt: RT, body: NewJob) -> m.CreatedJob:
    row = newjob.create_job(
        rt, body.kind, body.key, body.payload, post_id=body.post_id, delay_s=body.delay_s, queue=body.queue
    )
    return m.CreatedJob.model_validate(
        views.job_detail(rt, row["id"]) | {"deduplicated": bool(row.get("deduplicated"))}
    )


@router.get("/jobs/{job_id}", summary="One job with its event log, parent and children", responses=errors(*READ, 404))
def get_job(rt: RT, job_id: JobId) -> m.JobDetail:
    return m.JobDetail.model_validate(views.job_detail(rt, job_id))


@router.get("/jobs/{job_id}/events", summary="A job's event log (`jobs logs`)", responses=errors(*READ, 404))
def job_events(rt: RT, job_id: JobId) -> list[m.JobEvent]:
    return [m.JobEvent.model_validate(e) for e in views.job_detail(rt, job_id)["events"]]


@router.post(
    "/jobs/{job_id}/retry",
    summary="Run a failed or cancelled job again",
    description="409 when the job is not failed or cancelled, or while its cancelled run has not stopped yet.",
    responses=errors(*WRITE, 404, 409),
)
def retry_job(rt: RT, job_id: JobId) -> m.JobDetail:
    actions.retry_job(rt, job_id)
    return m.JobDetail.model_validate(views.job_detail(rt, job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a queued or running job (a running one stops at its next safe point)",
    description="409 when the job is no longer queued or running.",
    responses=errors(*WRITE, 404, 409),
)
def cancel_job(rt: RT, job_id: JobId) -> m.JobDetail:
    actions.cancel_job(rt, job_id)
    return m.JobDetail.model_validate(views.job_detail(rt, job_id))


def _bulk(rt: RT, action: Literal["retry", "cancel"], body: m.BulkRetry | m.BulkCancel) -> m.BulkResult:
    spec = JobFilter(action, body.status, body.queue, body.kind, body.since, body.older_than)
    return m.BulkResult.model_validate(actions.bulk(rt, spec, dry_run=body.dry_run))


@router.post(
    "/bulk/retry",
    summary="Retry every failed (or cancelled) job of a queue, kind and age, in one request",
    description="`dry_run` only counts them (what a confirmation shows). At most 10,000 per request (`more`).",
    responses=errors(*WRITE),
)
def bulk_retry(rt: RT, body: m.BulkRetry) -> m.BulkResult:
    return _bulk(rt, "retry", body)


@router.post(
    "/bulk/cancel",
    summary="Cancel every queued (or running) job of a queue, kind and age, in one request",
    description="`dry_run` only counts them (what a confirmation shows). At most 10,000 per request (`more`).",
    responses=errors(*WRITE),
)
def bulk_cancel(rt: RT, body: m.BulkCancel) -> m.BulkResult:
    return _bulk(rt, "cancel", body)


# -- queues and workers ---------------------------------------------------------------------------------


@router.get(
    "/queues",
    summary="Per queue: queued, running, scheduled, failed, paused, workers, oldest wait",
    responses=errors(*READ),
)
def list_queues(rt: RT) -> list[m.QueueStatus]:
    return [m.QueueStatus.model_validate(q) for q in queues.queue_status(rt)]


@router.post("/queues/{name}/pause", summary="Pause a queue: workers stop taking its jobs", responses=errors(*WRITE))
def pause_queue(rt: RT, name: QueueName) -> m.QueueChange:
    return m.QueueChange(queue=name, paused=True, changed=queues.pause(rt.redis, name))


@router.post("/queues/{name}/resume", summary="Resume a paused queue", responses=errors(*WRITE))
def resume_queue(rt: RT, name: QueueName) -> m.QueueChange:
    return m.QueueChange(queue=name, paused=False, changed=queues.resume(rt.redis, name))


@router.get(
    "/workers",
    summary="Every worker: state (alive, dead, stopped), queues, current job, heartbeat age, memory, jobs done",
    responses=errors(*READ),
)
def list_workers(rt: RT) -> list[m.Worker]:
    return [m.Worker.model_validate(w) for w in views.workers_view(rt)]


# -- posts and sources ------------------------------------------------------------------------------------


@router.get(
    "/posts",
    summary="List posts by state and route, newest first; `search` finds words in the original or rewritten text",
    responses=errors(*READ),
)
def list_posts(
    rt: RT,
    state: Annotated[m.PostState | None, Query()] = None,
    route: Text = None,
    search: Annotated[str | None, Query(max_length=200, description="Words the text must have (FTS5).")] = None,
    limit: Limit = 50,
    cursor: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
) -> m.PostPage:
    return m.PostPage.model_validate(
        views.posts_page(rt, state=state, route=route, limit=limit, before=cursor, search=search)
    )


@router.get(
    "/posts/{post_id}",
    summary="One post: original and rewrite, media, sends, jobs and the preview",
    responses=errors(*READ, 404),
)
def get_post(rt: RT, post_id: PostId) -> m.PostDetail:
    return m.PostDetail.model_validate(views.post_detail(rt, post_id))


@router.post(
    "/posts/{post_id}/approve",
    summary="Approve: the post takes its route's next free slot",
    description="409 when the post is not awaiting approval.",
    responses=errors(*WRITE, 404, 409),
)
def approve_post(rt: RT, post_id: PostId) -> m.Approved:
    slot = actions.approve(rt, post_id)
    return m.Approved(id=post_id, state="scheduled", scheduled_at=iso(slot))


@router.post(
    "/posts/{post_id}/reject",
    summary="Reject a post not yet published, with a reason",
    description="409 when the post is already published (or on its way).",
    responses=errors(*WRITE, 404, 409),
)
def reject_post(rt: RT, post_id: PostId, body: Reason | None = None) -> m.Post:
    return m.Post.model_validate(post_json(actions.reject(rt, post_id, body.reason if body else None)))


@router.put(
    "/posts/{post_id}/text",
    summary="Edit the text (validated as `posts edit` validates it)",
    description="400 when the text is not valid Telegram HTML or does not fit the route; 409 when the post's state"
    " no longer allows an edit.",
    responses=errors(*WRITE, 400, 404, 409),
)
def edit_post(rt: RT, post_id: PostId, body: Edit) -> m.Edited:
    return m.Edited(id=post_id, message=actions.edit_post(rt, post_id, body.html))


@router.post(
    "/posts/{post_id}/schedule",
    summary="Publish at a given time (`schedule ID --at`)",
    description="400 when `at` is not a time it can read; 409 when the post's state does not allow scheduling.",
    responses=errors(*WRITE, 400, 404, 409),
)
def schedule_post(rt: RT, post_id: PostId, body: At) -> m.Scheduled:
    slot, note = actions.schedule_at(rt, post_id, body.at)
    return m.Scheduled(id=post_id, state="scheduled", scheduled_at=iso(slot), note=note)


@router.delete(
    "/posts/{post_id}/schedule",
    summary="Take a post off the schedule (`unschedule`)",
    description="409 when the post is not scheduled.",
    responses=errors(*WRITE, 404, 409),
)
def unschedule_post(rt: RT, post_id: PostId) -> m.Post:
    return m.Post.model_validate(post_json(actions.unschedule(rt, post_id)))


@router.post(
    "/posts/{post_id}/publish",
    summary="Publish now through the publish queue (`publish ID`)",
    description="409 when the post's state does not allow publishing.",
    responses=errors(*WRITE, 404, 409),
)
def publish_post(rt: RT, post_id: PostId) -> m.PublishQueued:
    return m.PublishQueued(id=post_id, job=actions.publish_post_now(rt, post_id))


@router.get(
    "/sources",
    summary="Per donor channel: route, last collect, cursor, counts, error, its listener, the footer learned",
    responses=errors(*READ),
)
def list_sources(rt: RT) -> list[m.Source]:
    return [m.Source.model_validate(s) for s in views.sources_view(rt)]


# -- schedule, stats, usage, metrics, dashboard ---------------------------------------------------------


@router.get("/schedule", summary="Scheduled posts, soonest first, and each route's schedule", responses=errors(*READ))
def schedule(rt: RT, limit: Limit = 500) -> m.ScheduleView:
    view = views.schedule_view(rt, limit)
    return m.ScheduleView(posts=view["posts"], routes=view["routes"])


@router.get("/stats", summary="What the pipeline did in a window (`contentq stats`)", responses=errors(*READ))
def stats(
    rt: RT,
    since: Annotated[str, Query(pattern=r"^(all|" + DURATION[1:-1] + ")$", description="24h, 7d … or all.")] = "24h",
) -> m.Stats:
    return m.Stats.model_validate(collect_stats(rt, parse_since(since)))


@router.get("/usage", summary="LLM tokens and cost per day and route (`contentq usage`)", responses=errors(*READ))
def usage(rt: RT, since: Window = "30d", route: Text = None) -> m.Usage:
    return m.Usage.model_validate(views.usage_view(rt, since, route))


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (`contentq metrics`)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(*READ, json_route=False)},
)
def metrics(rt: RT) -> PlainTextResponse:
    return PlainTextResponse(exposition(rt), media_type="text/plain; version=0.0.4")


@router.get(
    "/dashboard",
    summary="The dashboard's data: queues, LLM breaker, open alerts, 24 h per hour",
    responses=errors(*READ),
)
def dashboard(rt: RT) -> m.Dashboard:
    return m.Dashboard.model_validate(views.dashboard(rt))


EVENTS_DOC = (
    "`event: job` (every job event, with the job's status) and `event: post` (post state changes), each with an"
    " `id:` (the cursor `JOB|POST`) and JSON `data:`; keep-alive comments every 15 s."
)


@router.get(
    "/events",
    summary="Server-Sent Events: job events and post state changes, live",
    response_class=EventSourceResponse,
    responses={
        200: {"description": EVENTS_DOC, "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **errors(*READ, 400, json_route=False),
    },
)
async def live_events(
    request: Request,
    rt: RT,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
    max_events: Annotated[int | None, Query(ge=1, le=10_000, description="Close after this many (scripts).")] = None,
    since_start: Annotated[bool, Query(description="Replay from the first event instead of from now.")] = False,
    once: Annotated[
        bool, Query(description="Send what is new, then close (with `retry:`): an EventSource then polls.")
    ] = False,
) -> EventSourceResponse:
    if last_event_id:
        cursor = events.Cursor.parse(last_event_id)
    elif since_start:
        cursor = events.Cursor(0, 0)
    else:
        cursor = events.Cursor.now(rt.store)
    # Ends when the client leaves, and when its login ends (logout, expiry, `web token --rotate`).
    ended = get_web(request).stream_ended(request)
    return EventSourceResponse(
        events.stream(rt.store, cursor, max_events=max_events, disconnected=ended, once=once), ping=15
    )
