"""Request plumbing shared by the API and the pages: the runtime, and the CSRF check on state changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from contentq.runtime.context import Runtime
from contentq.store.db import SQLITE_INT_MAX
from contentq.web import auth

if TYPE_CHECKING:  # app.py builds the routers that use these dependencies
    from contentq.web.app import Web

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
INT_MAX = SQLITE_INT_MAX


def get_web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def get_runtime(request: Request) -> Runtime:
    return get_web(request).runtime


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
