"""The owner's Users page (/users) and its forms: what `contentq users` does, without the CLI.

Each form posts here and is redirected back with a message, like every page's; a refusal shows the page again
with the sentence and its status (409, 422, 404) and what was typed (never a password). A new API token and a
generated password are shown by the answer to the form itself, once: they are never stored, not even in the
session's message.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contentq.errors import ContentqError, InvalidInputError
from contentq.people import users
from contentq.people.roles import Permission as P
from contentq.runtime.context import Runtime
from contentq.web import auth, people
from contentq.web.deps import INT_MAX, RT, csrf_guard, get_web, needs, person_of
from contentq.web.status import status_for

router = APIRouter(dependencies=[Depends(csrf_guard), needs(P.ADMIN)], include_in_schema=False)

UserName = Annotated[str, Path(max_length=40)]
ROLES = ("owner", "editor", "viewer")
Pw = Annotated[str | None, Form(max_length=users.MAX_PASSWORD)]


def _page(request: Request, rt: Runtime, status: int = 200, **context: Any) -> HTMLResponse:
    person = person_of(request)
    return get_web(request).page(
        request, "users.html", status=status, users=people.directory(rt), roles=ROLES,
        known_routes=people.known_routes(rt), me=person.name if person else "", typed=context.pop("typed", {}),
        **context,
    )  # fmt: skip


def _refused(request: Request, rt: Runtime, exc: ContentqError, typed: dict[str, Any] | None = None) -> HTMLResponse:
    status = status_for(exc)
    return _page(request, rt, status=status, error=str(exc), typed=typed or {})


def _back(request: Request, msg: str, anchor: str = "") -> RedirectResponse:
    auth.flash(get_web(request).runtime.store, getattr(request.state, "session", None), msg)
    return RedirectResponse("/users" + (f"#user-{anchor}" if anchor else ""), status_code=303)


def _routes(picked: list[str] | None, typed: str | None) -> list[str]:
    """Routes ticked (the routes of contentq.toml) or typed, comma-separated (no contentq.toml to list them)."""
    found = list(picked or [])
    found += [r.strip() for r in (typed or "").split(",") if r.strip()]
    return found


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInputError(f"no role {role!r}: owner, editor or viewer")
    return role


@router.get("/users")
def users_page(request: Request, rt: RT) -> HTMLResponse:
    """Every user with their role, routes, last login, sessions and tokens, and the forms to change them."""
    return _page(request, rt)


@router.post("/users")
def add_user(
    request: Request,
    rt: RT,
    name: Annotated[str, Form(max_length=40)],
    role: Annotated[str, Form(max_length=10)],
    routes: Annotated[list[str] | None, Form()] = None,
    routes_typed: Annotated[str | None, Form(max_length=2000)] = None,
    password: Pw = None,
    password_again: Pw = None,
    generate: Annotated[bool, Form()] = False,
) -> Response:
    picked = _routes(routes, routes_typed)
    try:
        row, shown = people.add(rt, name, _role(role), picked, password, password_again, generate)
    except ContentqError as exc:
        return _refused(request, rt, exc, {"name": name, "role": role, "routes": picked, "generate": generate})
    where = f" on routes {', '.join(row['routes'])}" if row["routes"] else ""
    said = f"user {row['name']} added: {row['role']}{where}"
    if shown is None:
        return _back(request, said, row["name"])
    return _page(request, rt, status=201, done=said, secret_for=row["name"], secret_kind="password",
                 secret=people.ShownOnce(shown))  # fmt: skip


@router.post("/users/{user}/role")
def change_role(
    request: Request,
    rt: RT,
    user: UserName,
    role: Annotated[str, Form(max_length=10)],
    routes: Annotated[list[str] | None, Form()] = None,
    routes_typed: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    try:
        row = people.change(rt, user, _role(role), _routes(routes, routes_typed))
    except ContentqError as exc:
        return _refused(request, rt, exc)
    where = f" on routes {', '.join(row['routes'])}" if row["role"] == "editor" else ""
    return _back(request, f"{row['name']} is now {row['role']}{where} (from their next request)", row["name"])


@router.post("/users/{user}/password")
def reset_password(
    request: Request,
    rt: RT,
    user: UserName,
    password: Pw = None,
    password_again: Pw = None,
    generate: Annotated[bool, Form()] = False,
) -> Response:
    try:
        ended, shown = people.reset_password(rt, user, password, password_again, generate)
    except ContentqError as exc:
        return _refused(request, rt, exc)
    said = f"password of {user} changed; {ended} session(s) of theirs ended"
    if shown is None:
        return _back(request, said, user)
    return _page(request, rt, done=said, secret_for=user, secret_kind="password", secret=people.ShownOnce(shown))


@router.post("/users/{user}/remove")
def remove_user(request: Request, rt: RT, user: UserName, confirm_self: Annotated[bool, Form()] = False) -> Response:
    try:
        gone = people.remove(rt, person_of(request), user, confirm_self)
    except ContentqError as exc:
        return _refused(request, rt, exc)
    return _back(request, f"user {gone['name']} removed, with their tokens and sessions")


@router.post("/users/{user}/tokens")
def issue_token(
    request: Request, rt: RT, user: UserName, label: Annotated[str | None, Form(max_length=60)] = None
) -> Response:
    try:
        made = people.issue_token(rt, user, label)
    except ContentqError as exc:
        return _refused(request, rt, exc)
    named = f" {made['label']!r}" if made["label"] else ""
    return _page(request, rt, status=201, done=f"API token{named} issued for {made['user']}",
                 secret_for=made["user"], secret_kind="token", secret=people.ShownOnce(made["token"]))  # fmt: skip


@router.post("/users/{user}/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, rt: RT, user: UserName, token_id: Annotated[int, Path(ge=1, le=INT_MAX)]
) -> Response:
    try:
        people.revoke_token(rt, user, token_id)
    except ContentqError as exc:
        return _refused(request, rt, exc)
    return _back(request, f"token {token_id} of {user} revoked", user)


@router.post("/users/{user}/sessions/{session_id}/revoke")
def revoke_session(
    request: Request, rt: RT, user: UserName, session_id: Annotated[str, Path(max_length=64)]
) -> Response:
    try:
        ended = people.revoke_session(rt, user, session_id)
    except ContentqError as exc:
        return _refused(request, rt, exc)
    return _back(request, f"session {ended['id']} of {ended['user']} revoked: that browser is logged out", user)


@router.post("/users/{user}/logout")
def logout_user(request: Request, rt: RT, user: UserName) -> Response:
    try:
        count = people.logout(rt, user)
    except ContentqError as exc:
        return _refused(request, rt, exc)
    return _back(request, f"{count} session(s) of {user} ended", user)
