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
from contentq.insights.report import build as insights_report
from contentq.ops.stats import collect_stats, parse_since
from contentq.people import sessions as people_sessions
from contentq.people import trail
from contentq.people.roles import Permission as P
from contentq.review.posts import post_json
from contentq.runtime import queues
from contentq.runtime.bulk import JobFilter
from contentq.store import audit
from contentq.web import actions, events, newjob, views
from contentq.web import models as m
from contentq.web.deps import RT, csrf_guard, get_web, needs, person_of
from contentq.web.models import DURATION, ID_MAX, READ, WRITE, Body, errors

BEARER = HTTPBearer(
    auto_error=False,  # the guard in app.py checks the token (or the session cookie) and answers 401
    description="A user's API token (`contentq users token NAME`); before any owner user exists, the panel's"
    " token (`contentq web token`). (The panel's own pages use their session.)",
)
"""Declares the bearer scheme in the OpenAPI document: Swagger UI's "Authorize" then sends the token."""

router = APIRouter(prefix="/api", dependencies=[Depends(csrf_guard), Security(BEARER)])

JobId = Annotated[str, Path(min_length=1, max_length=200)]
PostId = Annotated[int, Path(ge=1, le=ID_MAX)]
QueueName = Annotated[m.Queue, Path(description="A queue: " + ", ".join(queues.QUEUES))]
Limit = Annotated[int, Query(ge=1, le=views.PAGE_MAX)]
Text = Annotated[str | None, Query(max_length=200)]
Window = Annotated[str | None, Query(pattern=DURATION, description="A window: 90s, 15m, 24h, 7d, 2w.")]


ISO_TIME = r"^\d{4}-\d\d-\d\dT[0-9:.+Z-]{2,30}$"


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


@router.get(
    "/jobs",
    summary="List jobs, newest first (filters, cursor pagination)",
    responses=errors(*READ),
    dependencies=[needs(P.READ)],
)
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
    "/jobs",
    status_code=201,
    summary="Enqueue a job (as the pipeline does)",
    responses=errors(*WRITE, 400, 404, 409),
    dependencies=[needs(P.JOBS)],
)
def create_job(rt: RT, body: NewJob) -> m.CreatedJob:
    row = newjob.create_job(
        rt, body.kind, body.key, body.payload, post_id=body.post_id, delay_s=body.delay_s, queue=body.queue
    )
    if not row.get("deduplicated"):  # a job asked for by hand: who asked is in the audit (its events say what ran)
        audit.record(rt.store, "job", str(row["id"]), "created", f"{body.kind} {body.key or body.post_id or ''}")
    return m.CreatedJob.model_validate(
        views.job_detail(rt, row["id"]) | {"deduplicated": bool(row.get("deduplicated"))}
    )


@router.get(
    "/jobs/{job_id}",
    summary="One job with its event log, parent and children",
    responses=errors(*READ, 404),
    dependencies=[needs(P.READ)],
)
def get_job(rt: RT, job_id: JobId) -> m.JobDetail:
    return m.JobDetail.model_validate(views.job_detail(rt, job_id))


@router.get(
    "/jobs/{job_id}/events",
    summary="A job's event log (`jobs logs`)",
    responses=errors(*READ, 404),
    dependencies=[needs(P.READ)],
)
def job_events(rt: RT, job_id: JobId) -> list[m.JobEvent]:
    return [m.JobEvent.model_validate(e) for e in views.job_detail(rt, job_id)["events"]]


@router.post(
    "/jobs/{job_id}/retry",
    summary="Run a failed or cancelled job again",
    description="409 when the job is not failed or cancelled, or while its cancelled run has not stopped yet.",
    responses=errors(*WRITE, 404, 409),
    dependencies=[needs(P.JOBS)],
)
def retry_job(rt: RT, job_id: JobId) -> m.JobDetail:
    actions.retry_job(rt, job_id)
    return m.JobDetail.model_validate(views.job_detail(rt, job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a queued or running job (a running one stops at its next safe point)",
    description="409 when the job is no longer queued or running.",
    responses=errors(*WRITE, 404, 409),
    dependencies=[needs(P.JOBS)],
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
    dependencies=[needs(P.JOBS)],
)
def bulk_retry(rt: RT, body: m.BulkRetry) -> m.BulkResult:
    return _bulk(rt, "retry", body)


@router.post(
    "/bulk/cancel",
    summary="Cancel every queued (or running) job of a queue, kind and age, in one request",
    description="`dry_run` only counts them (what a confirmation shows). At most 10,000 per request (`more`).",
    responses=errors(*WRITE),
    dependencies=[needs(P.JOBS)],
)
def bulk_cancel(rt: RT, body: m.BulkCancel) -> m.BulkResult:
    return _bulk(rt, "cancel", body)


# -- queues and workers ---------------------------------------------------------------------------------


@router.get(
    "/queues",
    summary="Per queue: queued, running, scheduled, failed, paused, workers, oldest wait",
    responses=errors(*READ),
    dependencies=[needs(P.READ)],
)
def list_queues(rt: RT) -> list[m.QueueStatus]:
    return [m.QueueStatus.model_validate(q) for q in queues.queue_status(rt)]


@router.post(
    "/queues/{name}/pause",
    summary="Pause a queue: workers stop taking its jobs",
    responses=errors(*WRITE),
    dependencies=[needs(P.QUEUES)],
)
def pause_queue(rt: RT, name: QueueName) -> m.QueueChange:
    return m.QueueChange(queue=name, paused=True, changed=queues.set_paused(rt, name, True))


@router.post(
    "/queues/{name}/resume", summary="Resume a paused queue", responses=errors(*WRITE), dependencies=[needs(P.QUEUES)]
)
def resume_queue(rt: RT, name: QueueName) -> m.QueueChange:
    return m.QueueChange(queue=name, paused=False, changed=queues.set_paused(rt, name, False))


@router.get(
    "/workers",
    summary="Every worker: state (alive, dead, stopped), queues, current job, heartbeat age, memory, jobs done",
    responses=errors(*READ),
    dependencies=[needs(P.READ)],
)
def list_workers(rt: RT) -> list[m.Worker]:
    return [m.Worker.model_validate(w) for w in views.workers_view(rt)]


# -- posts and sources ------------------------------------------------------------------------------------


@router.get(
    "/posts",
    summary="List posts by state and route, newest first; `search` finds words in the original or rewritten text",
    responses=errors(*READ),
    dependencies=[needs(P.READ)],
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
    dependencies=[needs(P.READ)],
)
def get_post(rt: RT, post_id: PostId) -> m.PostDetail:
    return m.PostDetail.model_validate(views.post_detail(rt, post_id))


@router.post(
    "/posts/{post_id}/approve",
    summary="Approve: the post takes its route's next free slot",
    description="409 when the post is not awaiting approval.",
    responses=errors(*WRITE, 404, 409),
    dependencies=[needs(P.POSTS)],
)
def approve_post(rt: RT, post_id: PostId) -> m.Approved:
    slot = actions.approve(rt, post_id)
    return m.Approved(id=post_id, state="scheduled", scheduled_at=iso(slot))


@router.post(
    "/posts/{post_id}/reject",
    summary="Reject a post not yet published, with a reason",
    description="409 when the post is already published (or on its way).",
    responses=errors(*WRITE, 404, 409),
    dependencies=[needs(P.POSTS)],
)
def reject_post(rt: RT, post_id: PostId, body: Reason | None = None) -> m.Post:
    return m.Post.model_validate(post_json(actions.reject(rt, post_id, body.reason if body else None)))


@router.put(
    "/posts/{post_id}/text",
    summary="Edit the text (validated as `posts edit` validates it)",
    description="400 when the text is not valid Telegram HTML or does not fit the route; 409 when the post's state"
    " no longer allows an edit.",
    responses=errors(*WRITE, 400, 404, 409),
    dependencies=[needs(P.POSTS)],
)
def edit_post(rt: RT, post_id: PostId, body: Edit) -> m.Edited:
    return m.Edited(id=post_id, message=actions.edit_post(rt, post_id, body.html))


@router.post(
    "/posts/{post_id}/schedule",
    summary="Publish at a given time (`schedule ID --at`)",
    description="400 when `at` is not a time it can read; 409 when the post's state does not allow scheduling.",
    responses=errors(*WRITE, 400, 404, 409),
    dependencies=[needs(P.POSTS)],
)
def schedule_post(rt: RT, post_id: PostId, body: At) -> m.Scheduled:
    slot, note = actions.schedule_at(rt, post_id, body.at)
    return m.Scheduled(id=post_id, state="scheduled", scheduled_at=iso(slot), note=note)


@router.delete(
    "/posts/{post_id}/schedule",
    summary="Take a post off the schedule (`unschedule`)",
    description="409 when the post is not scheduled.",
    responses=errors(*WRITE, 404, 409),
    dependencies=[needs(P.POSTS)],
)
def unschedule_post(rt: RT, post_id: PostId) -> m.Post:
    return m.Post.model_validate(post_json(actions.unschedule(rt, post_id)))


@router.post(
    "/posts/{post_id}/publish",
    summary="Publish now through the publish queue (`publish ID`)",
    description="409 when the post's state does not allow publishing.",
    responses=errors(*WRITE, 404, 409),
    dependencies=[needs(P.POSTS)],
)
def publish_post(rt: RT, post_id: PostId) -> m.PublishQueued:
    return m.PublishQueued(id=post_id, job=actions.publish_post_now(rt, post_id))


@router.get(
    "/sources",
    summary="Per donor channel: route, last collect, cursor, counts, error, its listener, the footer learned",
    responses=errors(*READ),
    dependencies=[needs(P.READ)],
)
def list_sources(rt: RT) -> list[m.Source]:
    return [m.Source.model_validate(s) for s in views.sources_view(rt)]


# -- schedule, stats, usage, metrics, dashboard ---------------------------------------------------------


@router.get(
    "/schedule",
    summary="Scheduled posts, soonest first, and each route's schedule",
    responses=errors(*READ),
    dependencies=[needs(P.READ)],
)
def schedule(rt: RT, limit: Limit = 500) -> m.ScheduleView:
    view = views.schedule_view(rt, limit)
    return m.ScheduleView(posts=view["posts"], routes=view["routes"])


@router.get(
    "/stats",
    summary="What the pipeline did in a window (`contentq stats`)",
    responses=errors(*READ),
    dependencies=[needs(P.USAGE)],
)
def stats(
    rt: RT,
    since: Annotated[str, Query(pattern=r"^(all|" + DURATION[1:-1] + ")$", description="24h, 7d … or all.")] = "24h",
) -> m.Stats:
    return m.Stats.model_validate(collect_stats(rt, parse_since(since)))


@router.get(
    "/usage",
    summary="LLM tokens and cost per day and route (`contentq usage`)",
    responses=errors(*READ),
    dependencies=[needs(P.USAGE)],
)
def usage(rt: RT, since: Window = "30d", route: Text = None) -> m.Usage:
    return m.Usage.model_validate(views.usage_view(rt, since, route))


@router.get(
    "/insights",
    summary="What published posts achieved: per target, donor, slot and rewrite, with suggestions "
    "(`contentq insights`)",
    responses=errors(404, *READ),
    dependencies=[needs(P.USAGE)],  # its rewrite section says what the LLM cost
)
def insights(
    rt: RT,
    days: Annotated[int, Query(ge=1, le=3650, description="Posts published this many days back.")] = 30,
    route: Annotated[str | None, Query(max_length=200, description="Only this route (404: no such route).")] = None,
    min_posts: Annotated[
        int | None, Query(ge=1, le=100_000, description="The fewest posts a suggestion rests on (default 10).")
    ] = None,
) -> m.Insights:
    return m.Insights.model_validate(insights_report(rt, days=days, route=route, min_posts=min_posts).as_dict())


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (`contentq metrics`)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(*READ, json_route=False)},
    dependencies=[needs(P.USAGE)],
)
def metrics(rt: RT) -> PlainTextResponse:
    from contentq.ops.metrics import exposition  # prometheus_client: loaded at the first scrape, not by every panel

    return PlainTextResponse(exposition(rt), media_type="text/plain; version=0.0.4")


@router.get(
    "/dashboard",
    summary="The dashboard's data: queues, LLM breaker, open alerts, 24 h per hour",
    responses=errors(*READ),
    dependencies=[needs(P.READ)],
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
    dependencies=[needs(P.READ)],
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


# -- people: who am I, the audit trail, sessions ------------------------------------------------------------


@router.get(
    "/me", summary="Who this request is: user, role, routes, what the role allows", responses=errors(*READ),
    dependencies=[needs(P.READ)],
)  # fmt: skip
def me(request: Request) -> m.Me:
    person = person_of(request)
    assert person is not None  # the guard answered 401 otherwise
    allowed = [p.value for p in P if p is not P.PUBLIC and person.may(p)]
    return m.Me.model_validate(
        {"name": person.name, "role": person.role, "routes": list(person.routes), "via": person.via,
         "permissions": allowed}
    )  # fmt: skip


@router.get(
    "/audit",
    summary="What people did (`contentq audit`), newest first: owners only",
    responses=errors(*READ),
    dependencies=[needs(P.ADMIN)],
)
def audit_trail(
    rt: RT,
    actor: Annotated[
        str | None, Query(max_length=100, description="web:alice, cli:root, bot:123, or a kind: web, cli, bot.")
    ] = None,
    kind: Annotated[m.AuditKind | None, Query()] = None,
    since: Window = None,
    before: Annotated[str | None, Query(pattern=ISO_TIME, description="The next_before of the page before.")] = None,
    limit: Limit = 100,
) -> m.AuditPage:
    rows = trail.audit_trail(rt, actor=actor, since=since, kind=kind, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    return m.AuditPage(
        items=[m.AuditEntry.model_validate(r) for r in rows], next_before=rows[-1]["at"] if more else None
    )


@router.get(
    "/sessions", summary="Every live panel login: owners only", responses=errors(*READ), dependencies=[needs(P.ADMIN)]
)
def list_sessions(rt: RT) -> list[m.WebSession]:
    return [m.WebSession.model_validate(s) for s in people_sessions.sessions(rt)]


@router.delete(
    "/sessions/{session_id}",
    summary="End a panel login (its browser is logged out at its next request): owners only",
    responses=errors(*WRITE, 400, 404),
    dependencies=[needs(P.ADMIN)],
)
def revoke_session(
    rt: RT, session_id: Annotated[str, Path(pattern=r"^[0-9a-f]{6,64}$", description="The id the listing shows.")]
) -> m.SessionEnded:
    return m.SessionEnded.model_validate(people_sessions.revoke(rt, session_id))
