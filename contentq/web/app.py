"""The panel: a FastAPI app with server-rendered pages, a JSON API under /api/ and a live SSE feed.

Every action calls the core function its CLI command calls (runtime.tracking, runtime.queues, pipeline, …);
this module only parses requests, checks the token and CSRF, and renders. Everything shown passes
contentq.redact: Jinja's `finalize` for pages, the JSON response class for the API, the SSE messages.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from contentq import actors, notify
from contentq.errors import ContentqError, NotFoundError, RedisUnavailableError
from contentq.redact import redact, redact_data
from contentq.runtime.context import Runtime
from contentq.settings import Settings
from contentq.web import auth
from contentq.web.deps import actor_of

log = logging.getLogger("contentq.web")

STATIC = Path(__file__).parent / "static"
DOCS_ASSETS = "/api/docs/assets"
"""Swagger UI's scripts and styles, from the swagger-ui-bundle package."""
DATA = Path(__file__).parent.parent / "data"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
OPEN_PATHS = ("/login", "/static/", "/favicon.ico")


class RedactedJSON(JSONResponse):
    """The API's response class: every string passes redact before it leaves."""

    def render(self, content: Any) -> bytes:
        return super().render(redact_data(content))


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup):
        return Markup(redact(value))
    if isinstance(value, str):
        return redact(value)
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
    return env


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
        context["csrf"] = auth.csrf_token(self.token()) if getattr(request.state, "auth", None) else ""
        context["msg"] = request.query_params.get("msg", "")[:300]
        return HTMLResponse(self.env.get_template(name).render(request=request, **context), status_code=status)


def _status_for(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, RedisUnavailableError | redis.RedisError):
        return 503
    return 400


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    from contentq.web import api, pages

    notify.install()  # the runtime's admin notifier (the runtime does not know contentq.notify)
    web = Web(settings, runtime)
    app = FastAPI(
        title="contentq",
        description="The contentq admin API: jobs, queues, posts, schedule, stats, usage, metrics, live events.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        default_response_class=RedactedJSON,
    )
    app.state.web = web

    def error_response(request: Request, status: int, message: str) -> Response:
        message = redact(message)
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            return RedactedJSON({"error": message}, status_code=status)
        return web.page(request, "error.html", status=status, status_code=status, message=message, nav="")

    @app.exception_handler(ContentqError)
    async def _contentq_error(request: Request, exc: ContentqError) -> Response:
        return error_response(request, _status_for(exc), str(exc))

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
        response = error_response(request, exc.status_code, detail)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(request, 500, f"unexpected {type(exc).__name__}; the traceback is in the log")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        request.state.auth = None
        token = web.token()
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and auth.same(header[7:].strip(), token):
            request.state.auth = "bearer"
        elif auth.same(request.cookies.get(auth.COOKIE), auth.session_value(token)):
            request.state.auth = "cookie"
        if request.state.auth is None and not path.startswith(OPEN_PATHS):
            if path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
                response: Response = RedactedJSON(
                    {"error": "not logged in: send `Authorization: Bearer <token>` (`contentq web token` prints it)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            else:
                response = Response(status_code=303, headers={"Location": "/login"})
        else:
            with actors.acting_as(actor_of(request)):  # the request's moves of posts are recorded as its own
                response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI from the swagger-ui-bundle package, served here (no CDN: the panel works offline); its one
        inline script runs by nonce, nothing else inline."""
        nonce = secrets.token_urlsafe(16)
        page = get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="contentq API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )
        body = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}' 'self'; style-src 'self';"
                " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
            },
        )

    @app.get("/static/preview.css", include_in_schema=False)
    def preview_css() -> FileResponse:
        return FileResponse(DATA / "preview.css", media_type="text/css")

    @app.get("/static/preview.js", include_in_schema=False)
    def preview_js() -> FileResponse:
        return FileResponse(DATA / "preview.js", media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="api-docs-assets")
    app.include_router(api.router)
    app.include_router(pages.router)
    return app
