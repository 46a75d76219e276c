"""The server-rendered pages; their forms post here and are redirected back (no JavaScript needed to act)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from contentq.clock import iso
from contentq.content.bidi import restore_bidi
from contentq.content.media_types import FALLBACK, inline_type
from contentq.errors import ContentqError, NotFoundError
from contentq.runtime import queues, tracking
from contentq.store.jobs import STATUSES
from contentq.store.posts import STATES, media_file
from contentq.web import actions, auth, views
from contentq.web.deps import INT_MAX, RT, csrf_guard, get_web

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

PostId = Annotated[int, Path(ge=1, le=INT_MAX)]
JobId = Annotated[str, Path(min_length=1, max_length=200)]
Text = Annotated[str | None, Query(max_length=200)]


def back(request: Request, to: str, msg: str) -> RedirectResponse:
    """Back to the page the form was on, with `msg` kept for it in the session (never in the URL)."""
    auth.flash(get_web(request).runtime.store, getattr(request.state, "session", None), msg)
    return RedirectResponse(to, status_code=303)


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
        auth.COOKIE, auth.start_session(web.runtime.store, web.settings, current), httponly=True,
        samesite="strict", secure=request.url.scheme == "https", path="/",
        max_age=web.settings.web_session_max_hours * 3600,
    )  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Ends the session on the server (the cookie's value is dead from now on, wherever a copy of it is)."""
    session = getattr(request.state, "session", None)
    if session is not None:
        auth.logout(get_web(request).runtime.store, session)
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
    request: Request, rt: RT, name: Annotated[str, Path(max_length=40)], action: Annotated[str, Path(max_length=10)]
) -> Response:
    if action == "pause":
        queues.pause(rt.redis, name)
    elif action == "resume":
        queues.resume(rt.redis, name)
    else:
        raise NotFoundError(f"no queue action {action!r}: pause or resume")
    return back(request, "/", f"queue {name} {'paused' if action == 'pause' else 'resumed'}")


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
               "post_id": post_id or "", "limit": limit}  # fmt: skip
    return get_web(request).page(
        request, "jobs.html", page=page, filters=filters, statuses=STATUSES, queues=views.queue_names(),
        next_query=_next_query(filters, page["next_cursor"]),
    )  # fmt: skip


@router.get("/jobs/{job_id}")
def job(request: Request, rt: RT, job_id: JobId) -> HTMLResponse:
    return get_web(request).page(request, "job.html", nav="jobs", **views.job_detail(rt, job_id))


@router.post("/jobs/{job_id}/retry")
def retry(request: Request, rt: RT, job_id: JobId) -> Response:
    row = tracking.retry(rt, job_id)
    return back(request, f"/jobs/{job_id}", f"{job_id} queued again (run {row['generation']})")


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, rt: RT, job_id: JobId) -> Response:
    tracking.cancel(rt, job_id)
    return back(request, f"/jobs/{job_id}", f"{job_id} cancelled")


@router.get("/posts")
def posts(
    request: Request, rt: RT, state: Text = None, route: Text = None,
    limit: Annotated[int, Query(ge=1, le=views.PAGE_MAX)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
) -> HTMLResponse:  # fmt: skip
    page = views.posts_page(rt, state=state, route=route, limit=limit, before=cursor)
    filters = {"state": state or "", "route": route or "", "limit": limit}
    return get_web(request).page(
        request, "posts.html", page=page, filters=filters, states=STATES,
        next_query=_next_query(filters, page["next_cursor"]),
    )  # fmt: skip


def _next_query(filters: dict[str, Any], cursor: object) -> str:
    """The next page's query string: every filter of this page (none dropped), then the cursor."""
    return urlencode({k: v for k, v in filters.items() if v not in ("", None)} | {"cursor": cursor})


@router.get("/posts/{post_id}")
def post(request: Request, rt: RT, post_id: PostId) -> HTMLResponse:
    detail = views.post_detail(rt, post_id)
    return get_web(request).page(
        request, "post.html", nav="posts", published=views.published_link(detail["post"].get("link")), **detail
    )


@router.post("/posts/{post_id}/{action}")
def post_action(
    request: Request,
    rt: RT,
    post_id: PostId,
    action: Annotated[str, Path(max_length=20)],
    reason: Annotated[str | None, Form(max_length=2000)] = None,
    html: Annotated[str | None, Form(max_length=200_000)] = None,
    at: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    to = f"/posts/{post_id}"
    if action == "approve":
        return back(request, to, f"post {post_id} approved, scheduled for {iso(actions.approve(rt, post_id))}")
    if action == "reject":
        actions.reject(rt, post_id, reason)
        return back(request, to, f"post {post_id} rejected")
    if action == "edit":
        # The edit box showed bidi controls as ⟨U+202E⟩ (app._finalize): saved as the characters they stand for.
        return back(request, to, actions.edit_post(rt, post_id, restore_bidi(html or "")))
    if action == "schedule":
        if not at:
            raise ContentqError("give a time: 'now', '+2h', '18:30' or '2025-06-01 18:30'")
        slot, note = actions.schedule_at(rt, post_id, at)
        return back(request, to, f"post {post_id} scheduled for {iso(slot)}" + (f" ({note})" if note else ""))
    if action == "unschedule":
        actions.unschedule(rt, post_id)
        return back(request, to, f"post {post_id} unscheduled; it waits in awaiting_approval")
    if action == "publish":
        return back(request, to, f"post {post_id} queued for publishing (job {actions.publish_post_now(rt, post_id)})")
    raise NotFoundError(f"no post action {action!r}")


@router.get("/schedule")
def schedule(request: Request, rt: RT) -> HTMLResponse:
    return get_web(request).page(request, "schedule.html", **views.schedule_view(rt))


@router.get("/usage")
def usage(request: Request, rt: RT, since: Text = "30d", route: Text = None) -> HTMLResponse:
    data = views.usage_view(rt, since, route)
    return get_web(request).page(request, "usage.html", since=since or "", route=route or "", **data)


@router.get("/media/{media_id}")
def media(rt: RT, media_id: PostId) -> FileResponse:
    """A post's media file for the preview; only files inside CONTENTQ_HOME/media are ever served. Only an
    allow-list of exact photo, video and audio types is shown inline; any other stored type (HTML, SVG, PDF,
    a malformed one, none) is sent as an attachment of type application/octet-stream: a donor's file never
    renders as a page of the panel's origin, and a stored value never reaches a header."""
    row = media_file(rt.store, media_id)
    root = rt.settings.media_dir.resolve()
    if row is None or not row["path"]:
        raise NotFoundError(f"no media file {media_id}")
    path = (root / row["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFoundError(f"no media file {media_id}")
    shown = inline_type(row["mime"])
    if shown:
        return FileResponse(path, media_type=shown)
    return FileResponse(path, media_type=FALLBACK, filename=path.name)  # with app.MEDIA_CSP, like every /media
