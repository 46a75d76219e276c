"""The server-rendered pages; their forms post here and are redirected back (no JavaScript needed to act)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from contentq import actors
from contentq.clock import iso
from contentq.content.bidi import restore_bidi
from contentq.content.media_types import FALLBACK, inline_type
from contentq.errors import ContentqError, NotFoundError
from contentq.lifecycle import STATES
from contentq.people import logins, trail, users
from contentq.people import sessions as people_sessions
from contentq.people.roles import Permission as P
from contentq.runtime import bulk, queues
from contentq.runtime.bulk import JobFilter
from contentq.store.audit import KINDS as AUDIT_KINDS
from contentq.store.jobs import STATUSES
from contentq.store.posts import media_file
from contentq.web import actions, auth, views
from contentq.web.deps import INT_MAX, RT, client_address, csrf_guard, get_web, needs, person_of

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

PostId = Annotated[int, Path(ge=1, le=INT_MAX)]
JobId = Annotated[str, Path(min_length=1, max_length=200)]
Text = Annotated[str | None, Query(max_length=200)]


def back(request: Request, to: str, msg: str) -> RedirectResponse:
    """Back to the page the form was on, with `msg` kept for it in the session (never in the URL)."""
    auth.flash(get_web(request).runtime.store, getattr(request.state, "session", None), msg)
    return RedirectResponse(to, status_code=303)


@router.get("/login", dependencies=[needs(P.PUBLIC)])
def login_form(request: Request) -> HTMLResponse:
    web = get_web(request)
    return web.page(request, "login.html", nav="", shared=not users.owner_exists(web.runtime))


@router.post("/login", dependencies=[needs(P.PUBLIC)])
def login(
    request: Request,
    name: Annotated[str | None, Form(max_length=200)] = None,
    password: Annotated[str | None, Form(max_length=users.MAX_PASSWORD)] = None,
    token: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """A user's name and password; before any owner user exists, the panel's shared token (`contentq web token`).
    Failures are throttled per name and per client address (contentq/people/logins.py): 429 with Retry-After."""
    web = get_web(request)
    rt = web.runtime
    address = client_address(request)
    shared = not users.owner_exists(rt)
    user: str | None = None
    try:
        if token is not None and not name:
            if not shared:
                return web.page(
                    request, "login.html", status=401, nav="", shared=False,
                    error="the panel token no longer logs in: an owner user exists; log in with your name and password",
                )  # fmt: skip
            logins.shared_token_login(rt, auth.same(token.strip(), web.token()), address)
        else:
            person = logins.login(rt, name or "", password or "", address)
            user = person.name
            with actors.acting_as(f"web:{person.name}"):
                logins.record_login(rt, person, address)
    except logins.LoginThrottled as exc:
        response: Response = web.page(request, "login.html", status=429, nav="", shared=shared, error=str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except logins.LoginFailed as exc:
        return web.page(request, "login.html", status=401, nav="", shared=shared, error=str(exc), typed_name=name or "")
    response = RedirectResponse("/", status_code=303)
    value = auth.start_session(
        rt.store, web.settings, web.token(), user=user, address=address, agent=request.headers.get("user-agent", "")
    )
    response.set_cookie(
        auth.COOKIE, value, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/",
        max_age=web.settings.web_session_max_hours * 3600,
    )  # fmt: skip
    return response


@router.post("/logout", dependencies=[needs(P.PUBLIC)])
def logout(request: Request) -> Response:
    """Ends the session on the server (the cookie's value is dead from now on, wherever a copy of it is)."""
    session = getattr(request.state, "session", None)
    if session is not None:
        auth.logout(get_web(request).runtime.store, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


@router.get("/", dependencies=[needs(P.READ)])
def dashboard(request: Request, rt: RT) -> HTMLResponse:
    data = views.dashboard(rt)
    peak = max([h["succeeded"] + h["failed"] for h in data["hours"]] + [1])
    return get_web(request).page(request, "dashboard.html", peak=peak, **data)


@router.post("/queues/{name}/{action}", dependencies=[needs(P.QUEUES)])
def queue_action(
    request: Request, rt: RT, name: Annotated[str, Path(max_length=40)], action: Annotated[str, Path(max_length=10)]
) -> Response:
    if action == "pause":
        queues.set_paused(rt, name, True)
    elif action == "resume":
        queues.set_paused(rt, name, False)
    else:
        raise NotFoundError(f"no queue action {action!r}: pause or resume")
    return back(request, "/", f"queue {name} {'paused' if action == 'pause' else 'resumed'}")


@router.get("/jobs", dependencies=[needs(P.READ)])
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


Action = Annotated[Literal["retry", "cancel"], Query()]


def _bulk_spec(
    action: str, status: str | None, queue: str | None, kind: str | None, since: str | None, older: str | None,
    created_before: str | None = None,
) -> JobFilter:  # fmt: skip
    status = status or bulk.STATUSES_FOR.get(action, ("failed",))[0]
    return JobFilter(action, status, queue or None, kind or None, since or None, older or None,  # type: ignore[arg-type]
                     created_before or None)  # fmt: skip


@router.get("/jobs/bulk", dependencies=[needs(P.JOBS)])
def bulk_confirm(
    request: Request, rt: RT, action: Action = "retry", status: Text = None, queue: Text = None, kind: Text = None,
    since: Text = None, older_than: Text = None,
) -> HTMLResponse:  # fmt: skip
    """Retry or cancel every job of a filter: first this page, with the count and the filter to adjust, then one
    POST that does them all (jobs created after this page was shown are left out: the count is what it says)."""
    spec = _bulk_spec(action, status, queue, kind, since, older_than)
    as_of = iso()
    result = actions.bulk(rt, replace(spec, created_before=as_of), dry_run=True)
    return get_web(request).page(
        request, "bulk.html", nav="jobs", spec=spec, what=spec.describe(), result=result, as_of=as_of,
        statuses=bulk.STATUSES_FOR[action], queues=views.queue_names(),
    )  # fmt: skip


@router.post("/jobs/bulk", dependencies=[needs(P.JOBS)])
def bulk_run(
    request: Request, rt: RT, action: Annotated[Literal["retry", "cancel"], Form()],
    status: Annotated[str, Form(max_length=20)], queue: Annotated[str | None, Form(max_length=40)] = None,
    kind: Annotated[str | None, Form(max_length=40)] = None, since: Annotated[str | None, Form(max_length=12)] = None,
    older_than: Annotated[str | None, Form(max_length=12)] = None,
    created_before: Annotated[str | None, Form(max_length=40)] = None,
) -> Response:  # fmt: skip
    spec = _bulk_spec(action, status, queue, kind, since, older_than, created_before)
    result = actions.bulk(rt, spec)
    did = "queued again" if action == "retry" else "cancelled"
    msg = f"{result['done']} {spec.status} job(s) {did}"
    if result["skipped"]:
        msg += f"; {len(result['skipped'])} skipped (changed meanwhile; the first: {result['skipped'][0]['error']})"
    if result["more"]:
        msg += f"; more than {bulk.BULK_MAX} matched: do it again for the rest"
    filters = {"status": spec.status, "queue": spec.queue or "", "kind": spec.kind or ""}
    return back(request, "/jobs?" + urlencode({k: v for k, v in filters.items() if v}), msg)


@router.get("/jobs/{job_id}", dependencies=[needs(P.READ)])
def job(request: Request, rt: RT, job_id: JobId) -> HTMLResponse:
    return get_web(request).page(request, "job.html", nav="jobs", **views.job_detail(rt, job_id))


@router.post("/jobs/{job_id}/retry", dependencies=[needs(P.JOBS)])
def retry(request: Request, rt: RT, job_id: JobId) -> Response:
    row = actions.retry_job(rt, job_id)
    return back(request, f"/jobs/{job_id}", f"{job_id} queued again (run {row['generation']})")


@router.post("/jobs/{job_id}/cancel", dependencies=[needs(P.JOBS)])
def cancel(request: Request, rt: RT, job_id: JobId) -> Response:
    actions.cancel_job(rt, job_id)
    return back(request, f"/jobs/{job_id}", f"{job_id} cancelled")


@router.get("/posts", dependencies=[needs(P.READ)])
def posts(
    request: Request, rt: RT, state: Text = None, route: Text = None, search: Text = None,
    limit: Annotated[int, Query(ge=1, le=views.PAGE_MAX)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=INT_MAX)] = None,
) -> HTMLResponse:  # fmt: skip
    page = views.posts_page(rt, state=state, route=route, limit=limit, before=cursor, search=search)
    filters = {"search": search or "", "state": state or "", "route": route or "", "limit": limit}
    return get_web(request).page(
        request, "posts.html", page=page, filters=filters, states=STATES,
        next_query=_next_query(filters, page["next_cursor"]),
    )  # fmt: skip


def _next_query(filters: dict[str, Any], cursor: object) -> str:
    """The next page's query string: every filter of this page (none dropped), then the cursor."""
    return urlencode({k: v for k, v in filters.items() if v not in ("", None)} | {"cursor": cursor})


@router.get("/posts/{post_id}", dependencies=[needs(P.READ)])
def post(request: Request, rt: RT, post_id: PostId) -> HTMLResponse:
    detail = views.post_detail(rt, post_id)
    person = person_of(request)
    may_act = person is not None and person.may(P.POSTS, detail["post"]["route"])
    return get_web(request).page(
        request, "post.html", nav="posts", published=views.published_link(detail["post"].get("link")),
        may_act=may_act, **detail,
    )  # fmt: skip


@router.post("/posts/{post_id}/{action}", dependencies=[needs(P.POSTS)])
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


@router.get("/workers", dependencies=[needs(P.READ)])
def workers(request: Request, rt: RT) -> HTMLResponse:
    return get_web(request).page(request, "workers.html", workers=views.workers_view(rt),
                                 accounts=views.accounts_view(rt))  # fmt: skip


@router.get("/sources", dependencies=[needs(P.READ)])
def sources(request: Request, rt: RT) -> HTMLResponse:
    return get_web(request).page(request, "sources.html", sources=views.sources_view(rt))


@router.get("/schedule", dependencies=[needs(P.READ)])
def schedule(request: Request, rt: RT) -> HTMLResponse:
    return get_web(request).page(request, "schedule.html", **views.schedule_view(rt))


@router.get("/usage", dependencies=[needs(P.USAGE)])
def usage(request: Request, rt: RT, since: Text = "30d", route: Text = None) -> HTMLResponse:
    data = views.usage_view(rt, since, route)
    return get_web(request).page(request, "usage.html", since=since or "", route=route or "", **data)


@router.get("/insights", dependencies=[needs(P.USAGE)])  # its rewrite section says what the LLM cost
def insights(
    request: Request,
    rt: RT,
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
    route: Text = None,
    min_posts: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> HTMLResponse:
    data = views.insights_view(rt, days, route or None, min_posts)
    return get_web(request).page(request, "insights.html", days=days, route=route or "", **data)


@router.get("/media/{media_id}", dependencies=[needs(P.READ)])
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


@router.get("/audit", dependencies=[needs(P.ADMIN)])
def audit(
    request: Request, rt: RT, actor: Text = None, kind: Text = None, since: Text = None,
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:  # fmt: skip
    """What people did (`contentq audit`): owners only."""
    limit = views.PAGE_MAX
    rows = trail.audit_trail(rt, actor=actor, kind=kind, since=since, limit=limit + 1, before=before)
    filters = {"actor": actor or "", "kind": kind or "", "since": since or ""}
    more = len(rows) > limit
    rows = rows[:limit]
    next_query = urlencode({k: v for k, v in filters.items() if v} | {"before": rows[-1]["at"] if rows else ""})
    return get_web(request).page(
        request, "audit.html", rows=rows, filters=filters, kinds=AUDIT_KINDS, more=more, next_query=next_query
    )


@router.get("/sessions", dependencies=[needs(P.ADMIN)])
def sessions(request: Request, rt: RT) -> HTMLResponse:
    """Every live login, revocable (`contentq users sessions`): owners only."""
    session = getattr(request.state, "session", None)
    return get_web(request).page(
        request, "sessions.html", sessions=people_sessions.sessions(rt), mine=session.key[: people_sessions.SHORT]
        if session else "", idle=rt.settings.web_session_idle_minutes, max_hours=rt.settings.web_session_max_hours,
    )  # fmt: skip


@router.post("/sessions/{session_id}/revoke", dependencies=[needs(P.ADMIN)])
def revoke_session(request: Request, rt: RT, session_id: Annotated[str, Path(max_length=64)]) -> Response:
    ended = people_sessions.revoke(rt, session_id)
    return back(request, "/sessions", f"session {ended['id']} of {ended['user']} revoked")
