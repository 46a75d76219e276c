"""The server-rendered pages; their forms post here and are redirected back (no JavaScript needed to act)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from contentq.clock import iso
from contentq.errors import ContentqError, NotFoundError
from contentq.lifecycle import STATES
from contentq.runtime import queues, tracking
from contentq.store.jobs import STATUSES
from contentq.web import actions, auth, views
from contentq.web.deps import INT_MAX, RT, csrf_guard, get_web

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

PostId = Annotated[int, Path(ge=1, le=INT_MAX)]
JobId = Annotated[str, Path(min_length=1, max_length=200)]
Text = Annotated[str | None, Query(max_length=200)]


def back(to: str, msg: str) -> RedirectResponse:
    return RedirectResponse(f"{to}?msg={quote(msg[:300])}", status_code=303)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return get_web(request).page(request, "login.html", nav="")


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=200)]) -> Response:
    web = get_web(request)
    current = web.token()
    if not auth.same(token.strip(), current):
        return web.page(request, "login.html", status=401, nav="", error="wrong token")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        auth.COOKIE, auth.session_value(current), httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


@router.get("/")
def dashboard(request: Request, rt: RT) -> HTMLResponse:
    data = views.dashboard(rt)
    peak = max([h["succeeded"] + h["failed"] for h in data["hours"]] + [1])
    return get_web(request).page(request, "dashboard.html", peak=peak, **data)


@router.post("/queues/{name}/{action}")
def queue_action(
    rt: RT, name: Annotated[str, Path(max_length=40)], action: Annotated[str, Path(max_length=10)]
) -> Response:
    if action == "pause":
        queues.pause(rt.redis, name)
    elif action == "resume":
        queues.resume(rt.redis, name)
    else:
        raise NotFoundError(f"no queue action {action!r}: pause or resume")
    return back("/", f"queue {name} {'paused' if action == 'pause' else 'resumed'}")


@router.get("/jobs")
def jobs(
    request: Request, rt: RT, status: Text = None, queue: Text = None, kind: Text = None, since: Text = None,
    post_id: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=views.PAGE_MAX)] = 50, cursor: Text = None,
) -> HTMLResponse:  # fmt: skip
    page = views.jobs_page(
        rt, status=status, queue=queue, kind=kind, since=since, post_id=post_id, limit=limit, cursor=cursor
    )
    filters = {"status": status or "", "queue": queue or "", "kind": kind or "", "since": since or "",
               "limit": limit}  # fmt: skip
    return get_web(request).page(
        request, "jobs.html", page=page, filters=filters, statuses=STATUSES, queues=views.queue_names()
    )


@router.get("/jobs/{job_id}")
def job(request: Request, rt: RT, job_id: JobId) -> HTMLResponse:
    return get_web(request).page(request, "job.html", nav="jobs", **views.job_detail(rt, job_id))


@router.post("/jobs/{job_id}/retry")
def retry(rt: RT, job_id: JobId) -> Response:
    row = tracking.retry(rt, job_id)
    return back(f"/jobs/{job_id}", f"{job_id} queued again (run {row['generation']})")


@router.post("/jobs/{job_id}/cancel")
def cancel(rt: RT, job_id: JobId) -> Response:
    tracking.cancel(rt, job_id)
    return back(f"/jobs/{job_id}", f"{job_id} cancelled")


@router.get("/posts")
def posts(
    request: Request, rt: RT, state: Text = None, route: Text = None,
    limit: Annotated[int, Query(ge=1, le=views.PAGE_MAX)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
) -> HTMLResponse:  # fmt: skip
    page = views.posts_page(rt, state=state, route=route, limit=limit, before=cursor)
    filters = {"state": state or "", "route": route or "", "limit": limit}
    return get_web(request).page(request, "posts.html", page=page, filters=filters, states=STATES)


@router.get("/posts/{post_id}")
def post(request: Request, rt: RT, post_id: PostId) -> HTMLResponse:
    return get_web(request).page(request, "post.html", nav="posts", **views.post_detail(rt, post_id))


@router.post("/posts/{post_id}/{action}")
def post_action(
    rt: RT,
    post_id: PostId,
    action: Annotated[str, Path(max_length=20)],
    reason: Annotated[str | None, Form(max_length=2000)] = None,
    html: Annotated[str | None, Form(max_length=200_000)] = None,
    at: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    to = f"/posts/{post_id}"
    if action == "approve":
        return back(to, f"post {post_id} approved, scheduled for {iso(actions.approve(rt, post_id))}")
    if action == "reject":
        actions.reject(rt, post_id, reason)
        return back(to, f"post {post_id} rejected")
    if action == "edit":
        return back(to, actions.edit_post(rt, post_id, html or ""))
    if action == "schedule":
        if not at:
            raise ContentqError("give a time: 'now', '+2h', '18:30' or '2025-06-01 18:30'")
        slot, note = actions.schedule_at(rt, post_id, at)
        return back(to, f"post {post_id} scheduled for {iso(slot)}" + (f" ({note})" if note else ""))
    if action == "unschedule":
        actions.unschedule(rt, post_id)
        return back(to, f"post {post_id} unscheduled; it waits in awaiting_approval")
    if action == "publish":
        return back(to, f"post {post_id} queued for publishing (job {actions.publish_post_now(rt, post_id)})")
    raise NotFoundError(f"no post action {action!r}")


@router.get("/schedule")
def schedule(request: Request, rt: RT) -> HTMLResponse:
    return get_web(request).page(request, "schedule.html", **views.schedule_view(rt))


@router.get("/usage")
def usage(request: Request, rt: RT, since: Text = "30d", route: Text = None) -> HTMLResponse:
    data = views.usage_view(rt, since, route)
    return get_web(request).page(request, "usage.html", since=since or "", route=route or "", **data)


INLINE_MEDIA = ("image", "video", "audio")
"""Media types /media shows inline; any other is sent as an attachment."""

SCRIPTABLE = ("image/svg+xml",)
"""An image type that can carry script when opened on its own: an attachment too."""


@router.get("/media/{media_id}")
def media(rt: RT, media_id: PostId) -> FileResponse:
    """A post's media file for the preview; only files inside CONTENTQ_HOME/media are ever served."""
    row = rt.store.one("SELECT path, mime FROM media WHERE id = ?", (media_id,))
    root = rt.settings.media_dir.resolve()
    if row is None or not row["path"]:
        raise NotFoundError(f"no media file {media_id}")
    path = (root / row["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFoundError(f"no media file {media_id}")
    mime = (row["mime"] or "").split(";")[0].strip().lower()
    major, _, minor = mime.partition("/")
    if major in INLINE_MEDIA and minor and mime not in SCRIPTABLE:
        return FileResponse(path, media_type=mime)
    # A donor's file of any other type (HTML, SVG, PDF …) is never rendered as this origin's page: download it.
    # (Every response carries X-Content-Type-Options: nosniff, so the browser does not guess either.)
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)
