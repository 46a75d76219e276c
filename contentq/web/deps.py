"""Request plumbing shared by the API and the pages: the runtime, who is acting, and the CSRF check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from contentq.runtime.context import Runtime
from contentq.settings import Settings
from contentq.store.db import SQLITE_INT_MAX
from contentq.web import auth

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
INT_MAX = SQLITE_INT_MAX


class Web(Protocol):
    """What the handlers use of contentq.web.app.Web (a Protocol: app.py imports the routers that import this)."""

    runtime: Runtime
    settings: Settings

    def token(self) -> str: ...

    def authenticate(self, request: Request, *, touch: bool = True) -> tuple[str | None, auth.Session | None]: ...

    def stream_ended(self, request: Request) -> Callable[[], Awaitable[bool]]: ...

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse: ...


def get_web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def get_runtime(request: Request) -> Runtime:
    return get_web(request).runtime


def actor_of(request: Request) -> str:
    """Who a request acts as, recorded with every post it moves: `web:<how it logged in>@<client address>`
    (`session`: the browser's cookie; `token`: the API's bearer token)."""
    how = {"cookie": "session", "bearer": "token"}.get(getattr(request.state, "auth", None) or "", "anonymous")
    client = request.client.host if request.client is not None else "unknown"
    return f"web:{how}@{client}"


async def csrf_guard(request: Request) -> None:
    """A state-changing request made with the browser's cookie must carry the page's CSRF token (header or form
    field). A bearer-token request needs none: a browser never adds an Authorization header on its own."""
    if request.method in SAFE_METHODS or request.url.path == "/login":
        return  # logging in needs the token itself, which is more than a CSRF token proves
    if getattr(request.state, "auth", None) != "cookie":
        return
    sent = request.headers.get(auth.CSRF_HEADER)
    if sent is None and "form" in request.headers.get("content-type", ""):
        value = (await request.form()).get(auth.CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    session = getattr(request.state, "session", None)
    if session is None or not auth.same(sent, auth.csrf_token(get_web(request).token(), session)):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")


RT = Annotated[Runtime, Depends(get_runtime)]
