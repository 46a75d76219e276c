"""Request plumbing shared by the API and the pages: the runtime, who is acting, what their role allows, and
the CSRF check.

Roles: every endpoint declares the one permission it needs with `needs(Permission.X)` (in its route's, or its
router's, `dependencies`); that dependency asks contentq.people.roles and answers 403 with a sentence. An
endpoint that declares none is refused to everyone but an owner (`declared`, an app-wide dependency), and
tests/test_web_roles.py fails on it: a router added later gets the check without remembering it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute

from contentq.errors import NotFoundError
from contentq.people.roles import ROUTE_SCOPED, Permission, Person, refusal
from contentq.runtime.context import Runtime
from contentq.settings import Settings
from contentq.store.db import SQLITE_INT_MAX
from contentq.store.posts import get_post
from contentq.web import auth

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
INT_MAX = SQLITE_INT_MAX


class Web(Protocol):
    """What the handlers use of contentq.web.app.Web (a Protocol: app.py imports the routers that import this)."""

    runtime: Runtime
    settings: Settings

    def token(self) -> str: ...

    def authenticate(
        self, request: Request, *, touch: bool = True
    ) -> tuple[str | None, auth.Session | None, Person | None]: ...

    def stream_ended(self, request: Request) -> Callable[[], Awaitable[bool]]: ...

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse: ...


def get_web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def get_runtime(request: Request) -> Runtime:
    return get_web(request).runtime


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def actor_of(request: Request) -> str:
    """Who a request acts as, recorded with every post it moves and in the audit: `web:<user>` for a user (their
    session or API token); with the shared panel token, `web:<how it logged in>@<client address>` (`session`:
    the browser's cookie; `token`: the bearer token)."""
    person = person_of(request)
    if person is not None and person.via != "shared":
        return f"web:{person.name}"
    how = {"cookie": "session", "bearer": "token"}.get(getattr(request.state, "auth", None) or "", "anonymous")
    return f"web:{how}@{client_address(request)}"


def person_of(request: Request) -> Person | None:
    person: Person | None = getattr(request.state, "person", None)
    return person


class Needs:
    """The dependency that declares an endpoint's permission and checks it (`needs`)."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __repr__(self) -> str:
        return f"needs({self.permission.value})"

    def __call__(self, request: Request) -> None:
        if self.permission is Permission.PUBLIC:
            return
        person = person_of(request)
        if person is None:  # the guard answers 401 before; a route mounted outside it still refuses
            raise HTTPException(401, "not logged in", headers={"WWW-Authenticate": "Bearer"})
        route = post_route(request) if self.permission in ROUTE_SCOPED and person.role != "owner" else None
        why = refusal(person, self.permission, route)
        if why is not None:
            raise HTTPException(403, why)


def needs(permission: Permission) -> DependsParam:
    """`dependencies=[needs(Permission.POSTS)]`: the endpoint's (or router's) permission."""
    declared: DependsParam = Depends(Needs(permission))
    return declared


def post_route(request: Request) -> str | None:
    """The route of the post a request acts on (its `post_id` path parameter); None without one, or when there is
    no such post (the endpoint answers 404 then)."""
    raw = request.path_params.get("post_id")
    if raw is None:
        return None
    try:
        post_id = int(raw)
    except ValueError:
        return None
    if not 1 <= post_id <= INT_MAX:
        return None
    try:
        return str(get_post(get_web(request).runtime.store, post_id)["route"])
    except NotFoundError:
        return None


def permissions_of(route: APIRoute) -> list[Permission]:
    """The permissions a route declares (its router's and its own)."""
    return [d.dependency.permission for d in route.dependencies if isinstance(d.dependency, Needs)]


def declared(request: Request) -> None:
    """App-wide: a route that declares no permission is an owner's only (fail closed)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or permissions_of(route):
        return
    person = person_of(request)
    if person is None or person.role != "owner":
        raise HTTPException(403, f"forbidden: {request.url.path} declares no permission, so only an owner may use it")


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
