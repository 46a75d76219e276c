"""The JSON API under /api/: what the pages do, for scripts (bearer token) and the pages' own JavaScript."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from contentq.clock import iso
from contentq.ops.metrics import exposition
from contentq.ops.stats import collect_stats, parse_since
from contentq.posts import post_json
from contentq.runtime import queues, tracking
from contentq.web import actions, events, newjob, views
from contentq.web.deps import INT_MAX, RT, csrf_guard, get_web

BEARER = HTTPBearer(
    auto_error=False,  # the guard in app.py checks the token (or the session cookie) and answers 401
    description="The panel's token: `contentq web token` prints it. (The panel's own pages use their session.)",
)
"""Declares the bearer scheme in the OpenAPI document: Swagger UI's "Authorize" then sends the token."""

router = APIRouter(prefix="/api", dependencies=[Depends(csrf_guard), Security(BEARER)])

JobId = Annotated[str, Path(min_length=1, max_length=200)]
PostId = Annotated[int, Path(ge=1, le=INT_MAX)]
Limit = Annotated[int, Query(ge=1, le=views.PAGE_MAX)]
Text = Annotated[str | None, Query(max_length=200)]


class NewJob(BaseModel):
    kind: str = Field(max_length=40, description="collect, rewrite, publish, generate, imagegen, settle, noop")
    key: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
        description="What the job works on: a source, a route; for rewrite, publish, imagegen, settle the post id",
    )  # fmt: skip
    payload: dict[str, Any] = Field(default_factory=dict)
    post_id: int | None = Field(None, ge=1, le=INT_MAX)
    delay_s: float | None = Field(None, ge=0, description="Run it this many seconds from now.")
    queue: str | None = Field(None, max_length=40)


class Reason(BaseModel):
    reason: str | None = Field(None, max_length=2000)


class Edit(BaseModel):
    html: str = Field(max_length=200_000, description="The new text, Telegram HTML.")


class At(BaseModel):
    at: str = Field(max_length=100, description="'now', '+2h', '18:30', '2025-06-01 18:30' (route time) or ISO.")


# -- jobs ---------------------------------------------------------------------------------------------


@router.get("/jobs", summary="List jobs, newest first (filters, cursor pagination)")
def list_jobs(
    rt: RT, status: Text = None, queue: Text = None, kind: Text = None, since: Text = None,
    post_id: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None, limit: Limit = 50, cursor: Text = None,
) -> dict[str, Any]:  # fmt: skip
    return views.jobs_page(
        rt, status=status, queue=queue, kind=kind, since=since, post_id=post_id, limit=limit, cursor=cursor
    )


@router.post("/jobs", status_code=201, summary="Enqueue a job (as the pipeline does)")
def create_job(rt: RT, body: NewJob) -> dict[str, Any]:
    row = newjob.create_job(
        rt, body.kind, body.key, body.payload, post_id=body.post_id, delay_s=body.delay_s, queue=body.queue
    )
    return views.job_detail(rt, row["id"]) | {"deduplicated": bool(row.get("deduplicated"))}


@router.get("/jobs/{job_id}", summary="One job with its event log, parent and children")
def get_job(rt: RT, job_id: JobId) -> dict[str, Any]:
    return views.job_detail(rt, job_id)


@router.get("/jobs/{job_id}/events", summary="A job's event log (`jobs logs`)")
def job_events(rt: RT, job_id: JobId) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = views.job_detail(rt, job_id)["events"]
    return events


@router.post("/jobs/{job_id}/retry", summary="Run a failed or cancelled job again")
def retry_job(rt: RT, job_id: JobId) -> dict[str, Any]:
    tracking.retry(rt, job_id)
    return views.job_detail(rt, job_id)


@router.delete("/jobs/{job_id}", summary="Cancel a queued or running job")
def cancel_job(rt: RT, job_id: JobId) -> dict[str, Any]:
    tracking.cancel(rt, job_id)
    return views.job_detail(rt, job_id)


# -- queues -------------------------------------------------------------------------------------------


@router.get("/queues", summary="Per queue: queued, running, scheduled, failed, paused, workers, oldest wait")
def list_queues(rt: RT) -> list[dict[str, Any]]:
    return queues.queue_status(rt)


@router.post("/queues/{name}/pause", summary="Pause a queue: workers stop taking its jobs")
def pause_queue(rt: RT, name: Annotated[str, Path(max_length=40)]) -> dict[str, Any]:
    return {"queue": name, "paused": True, "changed": queues.pause(rt.redis, name)}


@router.post("/queues/{name}/resume", summary="Resume a paused queue")
def resume_queue(rt: RT, name: Annotated[str, Path(max_length=40)]) -> dict[str, Any]:
    return {"queue": name, "paused": False, "changed": queues.resume(rt.redis, name)}


# -- posts --------------------------------------------------------------------------------------------


@router.get("/posts", summary="List posts by state and route, newest first")
def list_posts(
    rt: RT, state: Text = None, route: Text = None, limit: Limit = 50,
    cursor: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
) -> dict[str, Any]:  # fmt: skip
    return views.posts_page(rt, state=state, route=route, limit=limit, before=cursor)


@router.get("/posts/{post_id}", summary="One post: original and rewrite, media, sends, jobs and the preview")
def get_post(rt: RT, post_id: PostId) -> dict[str, Any]:
    return views.post_detail(rt, post_id)


@router.post("/posts/{post_id}/approve", summary="Approve: the post takes its route's next free slot")
def approve_post(rt: RT, post_id: PostId) -> dict[str, Any]:
    slot = actions.approve(rt, post_id)
    return {"id": post_id, "state": "scheduled", "scheduled_at": iso(slot)}


@router.post("/posts/{post_id}/reject", summary="Reject a post not yet published, with a reason")
def reject_post(rt: RT, post_id: PostId, body: Reason | None = None) -> dict[str, Any]:
    return post_json(actions.reject(rt, post_id, body.reason if body else None))


@router.put("/posts/{post_id}/text", summary="Edit the text (validated as `posts edit` validates it)")
def edit_post(rt: RT, post_id: PostId, body: Edit) -> dict[str, Any]:
    return {"id": post_id, "message": actions.edit_post(rt, post_id, body.html)}


@router.post("/posts/{post_id}/schedule", summary="Publish at a given time (`schedule ID --at`)")
def schedule_post(rt: RT, post_id: PostId, body: At) -> dict[str, Any]:
    slot, note = actions.schedule_at(rt, post_id, body.at)
    return {"id": post_id, "state": "scheduled", "scheduled_at": iso(slot), "note": note}


@router.delete("/posts/{post_id}/schedule", summary="Take a post off the schedule (`unschedule`)")
def unschedule_post(rt: RT, post_id: PostId) -> dict[str, Any]:
    return post_json(actions.unschedule(rt, post_id))


@router.post("/posts/{post_id}/publish", summary="Publish now through the publish queue (`publish ID`)")
def publish_post(rt: RT, post_id: PostId) -> dict[str, Any]:
    return {"id": post_id, "job": actions.publish_post_now(rt, post_id)}


# -- schedule, stats, usage, metrics, dashboard ---------------------------------------------------------


@router.get("/schedule", summary="Scheduled posts, soonest first, and each route's schedule")
def schedule(rt: RT, limit: Limit = 500) -> dict[str, Any]:
    view = views.schedule_view(rt, limit)
    return {"posts": view["posts"], "routes": view["routes"]}


@router.get("/stats", summary="What the pipeline did in a window (`contentq stats`)")
def stats(rt: RT, since: Annotated[str, Query(max_length=20)] = "24h") -> dict[str, Any]:
    return collect_stats(rt, parse_since(since))


@router.get("/usage", summary="LLM tokens and cost per day and route (`contentq usage`)")
def usage(rt: RT, since: Text = "30d", route: Text = None) -> dict[str, Any]:
    return views.usage_view(rt, since, route)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (`contentq metrics`)")
def metrics(rt: RT) -> PlainTextResponse:
    return PlainTextResponse(exposition(rt), media_type="text/plain; version=0.0.4")


@router.get("/dashboard", summary="The dashboard's data: queues, LLM breaker, open alerts, 24 h per hour")
def dashboard(rt: RT) -> dict[str, Any]:
    return views.dashboard(rt)


@router.get("/events", summary="Server-Sent Events: job events and post state changes, live")
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
