"""The panel: a FastAPI app with server-rendered pages, a JSON API under /api/ and a live SSE feed.

Every action calls the core function its CLI command calls (runtime.tracking, runtime.queues, pipeline, …);
this module only parses requests, checks the token and CSRF, and renders. Everything shown passes
contentq.redact: Jinja's `finalize` for pages, the JSON response class for the API, the SSE messages.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from contentq import actors, notify
from contentq.content.bidi import show_bidi
from contentq.errors import ContentqError
from contentq.people import users
from contentq.people.roles import Permission, Person
from contentq.redact import redact, redact_data
from contentq.runtime.context import Runtime
from contentq.settings import Settings
from contentq.web import auth
from contentq.web.deps import actor_of, declared, needs
from contentq.web.limits import BodyLimit
from contentq.web.status import status_for

log = logging.getLogger("contentq.web")

STATIC = Path(__file__).parent / "static"
DATA = Path(__file__).parent.parent / "data"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self';"
    " connect-src 'self'; worker-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATH = "/api/docs"
"""Swagger UI: a page (a browser not logged in is sent to the login form), under /api/ where it has always been."""
MEDIA_CSP = "sandbox"
"""Every /media answer's CSP: a file opened on its own is a sandboxed document (no script, an opaque origin),
whatever its type."""
OPEN_PATHS = ("/login", "/static/", "/favicon.ico")
NOT_LOGGED_IN = (
    "not logged in: send `Authorization: Bearer <token>` (`contentq users token NAME` prints a user's; before any"
    " owner user exists, `contentq web token`)"
)


class RedactedJSON(JSONResponse):
    """The API's response class: every string passes redact before it leaves."""

    def render(self, content: Any) -> bytes:
        return super().render(redact_data(content))


def _finalize(value: Any) -> Any:
    """Every value a page shows: secrets masked, bidi controls made visible (⟨U+202E⟩) — in one place, so no
    template (preview, list, edit box) can forget either."""
    if isinstance(value, Markup):
        return Markup(show_bidi(redact(value)))  # a marker holds no <, > or &: the markup stays as it was
    if isinstance(value, str):
        return show_bidi(redact(value))
    return "" if value is None else value


def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("contentq.web", "templates"),
        autoescape=select_autoescape(["html"]),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = lambda s, n=80: (s or "")[:n] + ("…" if s and len(s) > n else "")
    env.filters["age"] = age
    return env


def age(seconds: float) -> str:
    """A duration as a person reads it: 40 s, 12 min, 5 h, 3 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


class Web:
    """What the handlers share: the runtime (the same store and Redis the CLI uses) and the templates."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or Runtime(settings)
        self.env = templates()
        auth.load_token(settings)  # generated on first run

    def token(self) -> str:
        """Read per request: `contentq web token --rotate` takes effect at once, no restart."""
        return auth.load_token(self.settings)

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("nav", name.removesuffix(".html"))
        session = getattr(request.state, "session", None)
        context["signed_in"] = bool(getattr(request.state, "auth", None))
        person: Person | None = getattr(request.state, "person", None)
        context["person"] = person
        context["may"] = {p.value: bool(person and person.may(p)) for p in Permission}
        context["csrf"] = auth.csrf_token(self.token(), session) if session else ""
        context["msg"] = auth.take_flash(self.runtime.store, session)  # from the server only, never the URL
        return HTMLResponse(self.env.get_template(name).render(request=request, **context), status_code=status)

    def authenticate(
        self, request: Request, *, touch: bool = True
    ) -> tuple[str | None, auth.Session | None, Person | None]:
        """How the request is signed in and who it is: ("bearer", None, person) for an API token,
        ("cookie", its session, person) for a browser's login, or (None, None, None)."""
        token = self.token()
        store = self.runtime.store
        sent = _bearer(request)
        if sent is not None:
            person = users.token_person(self.runtime, sent)
            if person is not None:
                return "bearer", None, person
            if auth.same(sent, token) and not users.owner_exists(self.runtime):
                return "bearer", None, SHARED
        session = auth.current_session(store, self.settings, token, request.cookies.get(auth.COOKIE), touch=touch)
        if session is None:
            return None, None, None
        if session.user is None:
            if users.owner_exists(self.runtime):  # the shared token was the owner's until an owner user existed
                auth.logout(store, session)
                return None, None, None
            return "cookie", session, SHARED
        row = users.find(self.runtime, session.user)
        if row is None:
            auth.logout(store, session)
            return None, None, None
        return "cookie", session, users.person(row, "password")

    def stream_ended(self, request: Request) -> Callable[[], Awaitable[bool]]:
        """For a live stream: true once the client left, or once the login it was opened with has ended (logout,
        expiry, `web token --rotate`), which is checked at most every RECHECK_SECONDS."""
        checked = time.monotonic()

        async def ended() -> bool:
            nonlocal checked
            if await request.is_disconnected():
                return True
            if time.monotonic() - checked < RECHECK_SECONDS:
                return False
            checked = time.monotonic()
            try:
                how, _, _ = await run_in_threadpool(self.authenticate, request, touch=False)
            except ContentqError:  # the token file is gone or unreadable: nobody is signed in
                return True
            return how is None

        return ended


SHARED = Person(name="owner (panel token)", role="owner", via="shared")
"""Who the panel's shared token is, until an owner user exists."""

RECHECK_SECONDS = 1.0
"""How often an open live stream checks that its login still holds."""


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of the app takes on this request's path (asked of the router itself)."""
    return [
        method
        for method in METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    ]


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    from contentq.web import api, pages, users_api, users_page

    notify.install()  # the runtime's admin notifier (the runtime does not know contentq.notify)
    web = Web(settings, runtime)
    app = FastAPI(
        title="contentq",
        description="The contentq admin API: jobs, queues, posts, schedule, stats, usage, metrics, live events.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        default_response_class=RedactedJSON,
        dependencies=[Depends(declared)],  # a route that declares no permission is an owner's only
    )
    app.state.web = web

    def error_response(request: Request, status: int, message: str) -> Response:
        message = redact(message)
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            return RedactedJSON({"error": message}, status_code=status)
        return web.page(request, "error.html", status=status, status_code=status, message=message, nav="")

    @app.exception_handler(ContentqError)
    async def _contentq_error(request: Request, exc: ContentqError) -> Response:
        return error_response(request, status_for(exc), str(exc))

    @app.exception_handler(redis.RedisError)
    async def _redis_error(request: Request, exc: redis.RedisError) -> Response:
        return error_response(request, 503, f"Redis error: {exc}; check that Redis is running")

    @app.exception_handler(sqlite3.Error)
    async def _db_error(request: Request, exc: sqlite3.Error) -> Response:
        return error_response(request, 503, f"database error: {exc}; run `contentq doctor`")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}" for e in exc.errors()
        )
        return error_response(request, 422, f"bad request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        headers = dict(exc.headers or {})
        if exc.status_code == 400 and detail == "There was an error parsing the body":  # FastAPI's own
            return error_response(request, 422, "bad request: the body is not valid JSON (UTF-8)")
        if exc.status_code == 405:
            # Starlette names the methods of the first route whose path matched; a path served by several
            # routes (POST and DELETE /api/posts/{id}/schedule) takes them all.
            allowed = allowed_methods(app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed on {request.url.path}: it takes {', '.join(allowed)}"
        response = error_response(request, exc.status_code, detail)
        response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(request, 500, f"unexpected {type(exc).__name__}; the traceback is in the log")

    # Added before the guard, so inside it: a body is refused only after the token is checked.
    app.add_middleware(BodyLimit, max_bytes=settings.web_max_body_kb * 1024)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        request.state.auth, request.state.session, request.state.person = await run_in_threadpool(
            web.authenticate, request
        )
        if request.state.auth is None and not path.startswith(OPEN_PATHS):
            browser_page = "text/html" in request.headers.get("accept", "")
            if (path.startswith("/api/") and path != DOCS_PATH) or not browser_page:
                response: Response = RedactedJSON(
                    {"error": NOT_LOGGED_IN},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            else:
                response = Response(status_code=303, headers={"Location": "/login"})
        else:
            with actors.acting_as(actor_of(request)):  # the request's moves of posts are recorded as its own
                response = await call_next(request)
        if path.startswith("/media/"):
            response.headers["Content-Security-Policy"] = MEDIA_CSP
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get(DOCS_PATH, include_in_schema=False, dependencies=[needs(Permission.READ)])
    def docs(request: Request) -> HTMLResponse:
        """Swagger UI 5 (vendored under static/swagger-ui: no CDN, the panel works offline), started by
        static/api-docs.js: no inline script, the panel's CSP as on every page."""
        return web.page(request, "api_docs.html")

    @app.get("/favicon.ico", include_in_schema=False, dependencies=[needs(Permission.PUBLIC)])
    def favicon() -> FileResponse:
        return FileResponse(
            STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"}
        )

    @app.get("/static/preview.css", include_in_schema=False, dependencies=[needs(Permission.PUBLIC)])
    def preview_css() -> FileResponse:
        return FileResponse(DATA / "preview.css", media_type="text/css")

    @app.get("/static/preview.js", include_in_schema=False, dependencies=[needs(Permission.PUBLIC)])
    def preview_js() -> FileResponse:
        return FileResponse(DATA / "preview.js", media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(api.router)
    app.include_router(users_api.router)
    app.include_router(pages.router)
    app.include_router(users_page.router)
    return app
