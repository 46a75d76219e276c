"""/api/users: the owner's user management (what `contentq users` does), with the API's exact contract.

Every operation needs the admin permission (owners). A new API token and a generated password are the two
values the API sends on purpose although they are secrets: those answers are built here with every other
string redacted as usual, the secret field alone left as it is (the response class would mask it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import JSONResponse

from contentq.people.roles import Permission as P
from contentq.redact import redact_data
from contentq.web import models as m
from contentq.web import people
from contentq.web.api import BEARER
from contentq.web.deps import RT, csrf_guard, needs, person_of
from contentq.web.models import ID_MAX, READ, WRITE, errors

router = APIRouter(
    prefix="/api/users", dependencies=[Depends(csrf_guard), Security(BEARER), needs(P.ADMIN)], tags=["users"]
)

UserName = Annotated[str, Path(pattern=m.USER_NAME, max_length=40, description="The user's name.")]
TokenId = Annotated[int, Path(ge=1, le=ID_MAX, description="The token's id (the listing's).")]
SessionId = Annotated[str, Path(pattern=r"^[0-9a-f]{6,64}$", description="The id the listing shows.")]

VALUES = (
    "422 (with the CLI's sentence) when a value cannot be used: a password under 10 characters, two passwords that"
    " differ, none given without `generate`, a route not in contentq.toml, routes for a role other than editor."
)


def _with_secret(model: m.Out, field: str, status: int = 200) -> JSONResponse:
    """The answer with every string redacted but `field`: the secret shown this once."""
    body: dict[str, Any] = model.model_dump(mode="json")
    secret = body.pop(field)
    return JSONResponse(redact_data(body) | {field: secret}, status_code=status)


@router.get("", summary="Every user: role, routes, last login, live sessions and API tokens", responses=errors(*READ))
def list_users(rt: RT) -> list[m.User]:
    return [m.User.model_validate(u) for u in people.directory(rt)]


@router.post(
    "",
    status_code=201,
    response_model=m.UserCreated,
    summary="Add a user (`contentq users add`), with a password typed twice or a generated one",
    description=VALUES + " 409 when the name is taken.",
    responses=errors(*WRITE, 409),
)
def add_user(rt: RT, body: m.NewUser) -> JSONResponse:
    row, shown = people.add(rt, body.name, body.role, body.routes, body.password, body.password_again, body.generate)
    created = m.UserCreated.model_validate(people.one(rt, row["name"]) | {"generated_password": shown})
    return _with_secret(created, "generated_password", 201)


@router.get("/{user}", summary="One user", responses=errors(*READ, 404))
def get_user(rt: RT, user: UserName) -> m.User:
    return m.User.model_validate(people.one(rt, user))


@router.patch(
    "/{user}",
    summary="Change a user's role or an editor's routes (`users role`, `users routes`)",
    description="Effective at the user's next request. 409 when it would leave no owner. " + VALUES,
    responses=errors(*WRITE, 404, 409),
)
def change_user(rt: RT, user: UserName, body: m.UserChange) -> m.User:
    people.change(rt, user, body.role, body.routes)
    return m.User.model_validate(people.one(rt, user))


@router.put(
    "/{user}/password",
    response_model=m.PasswordSet,
    summary="Reset a user's password (`users passwd`): their sessions end",
    description=VALUES,
    responses=errors(*WRITE, 404),
)
def set_password(rt: RT, user: UserName, body: m.NewPassword) -> JSONResponse:
    ended, shown = people.reset_password(rt, user, body.password, body.password_again, body.generate)
    answer = m.PasswordSet(name=user, sessions_ended=ended, generated_password=shown)
    return _with_secret(answer, "generated_password")


@router.post(
    "/{user}/tokens",
    status_code=201,
    response_model=m.TokenIssued,
    summary="Issue an API token for the user (`users token`): its value is answered this once",
    responses=errors(*WRITE, 404),
)
def issue_token(rt: RT, user: UserName, body: m.NewToken | None = None) -> JSONResponse:
    made = people.issue_token(rt, user, body.label if body else None)
    return _with_secret(m.TokenIssued.model_validate(made), "token", 201)


@router.delete(
    "/{user}/tokens/{token_id}",
    summary="Revoke one of the user's API tokens (`users token NAME --revoke --id N`)",
    responses=errors(*WRITE, 404),
)
def revoke_token(rt: RT, user: UserName, token_id: TokenId) -> m.TokenRevoked:
    people.revoke_token(rt, user, token_id)
    return m.TokenRevoked(user=user, id=token_id)


@router.delete(
    "/{user}/sessions",
    summary="End every panel session of the user (`users logout`); their API tokens stay",
    responses=errors(*WRITE, 404),
)
def end_sessions(rt: RT, user: UserName) -> m.SessionsEnded:
    return m.SessionsEnded(user=user, ended=people.logout(rt, user))


@router.delete(
    "/{user}/sessions/{session_id}",
    summary="End one panel session of the user: that browser is logged out at its next request",
    responses=errors(*WRITE, 404),
)
def end_session(rt: RT, user: UserName, session_id: SessionId) -> m.SessionEnded:
    return m.SessionEnded.model_validate(people.revoke_session(rt, user, session_id))


# Last: the contract test pins {user} to one user, whose removal leaves the operations after it nothing to act on.
@router.delete(
    "/{user}",
    summary="Remove a user, their tokens and sessions (`users remove`)",
    description="409 for the only owner while other users remain, and for yourself without `confirm_self`.",
    responses=errors(*WRITE, 404, 409),
)
def remove_user(
    request: Request,
    rt: RT,
    user: UserName,
    confirm_self: Annotated[bool, Query(description="Yes, remove the user this request is made as.")] = False,
) -> m.UserRemoved:
    return m.UserRemoved.model_validate(people.remove(rt, person_of(request), user, confirm_self))
