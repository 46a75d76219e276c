"""The owner's Users page and /api/users: each action calls the function `contentq users …` calls
(contentq/people/users.py, contentq/people/sessions.py), which checks it by the CLI's rules and writes the audit
row with the acting panel user (the request's actor). This module adapts form and API input and says what kind
of refusal each is:

- 404: no such user, token or session;
- 409: the set of users refuses it (the last owner, a name taken, removing yourself without confirming);
- 422: a value given cannot be used (a weak password, two that differ, an unknown route, routes for a non-editor).

The cores raise a plain ContentqError for a value they refuse; here it becomes an InvalidInputError with that
sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from markupsafe import Markup, escape

from contentq.errors import ConflictError, ContentqError, InvalidInputError, NotFoundError
from contentq.people import sessions as people_sessions
from contentq.people import users
from contentq.people.roles import Person
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime

T = TypeVar("T")


@contextmanager
def refused_values() -> Iterator[None]:
    """Inside: a plain refusal of the core is about a value the person gave (422)."""
    try:
        yield
    except ContentqError as exc:
        if type(exc) is ContentqError:
            raise InvalidInputError(str(exc)) from None
        raise


def checked(fn: Callable[..., T], *args: Any) -> T:
    with refused_values():
        return fn(*args)


def directory(rt: Runtime) -> list[dict[str, Any]]:
    """Every user as the Users page and GET /api/users show them: role, routes, last login, live sessions and
    live API tokens (by label, with when each was made and last used)."""
    live = people_sessions.sessions(rt)
    rows = users.list_users(rt)
    for row in rows:
        row["sessions"] = [s for s in live if s["user"] == row["name"]]
        row["tokens"] = [t for t in users.list_tokens(rt, row["name"]) if not t["revoked_at"]]
        for token in row["tokens"]:
            token.pop("revoked_at")
    return rows


def one(rt: Runtime, name: str) -> dict[str, Any]:
    found = users.get_user(rt, name)["name"]  # 404 first; a name matches in any case
    return next(row for row in directory(rt) if row["name"] == found)


def known_routes(rt: Runtime) -> list[str]:
    """The routes an editor may be given (contentq.toml's); none without a config file."""
    if not rt.settings.config_path.exists():
        return []
    return sorted(routes_config(rt).routes)


def _password(password: str | None, again: str | None, generate: bool) -> tuple[str, str | None]:
    """The password to set and, when generated, the one to show once."""
    if generate:
        if password:
            raise InvalidInputError("give a password (typed twice) or ask for a generated one, not both")
        made = users.generate_password()
        return made, made
    if not password:
        raise InvalidInputError("give a password, typed twice, or ask for a generated one")
    return checked(users.check_password_pair, password, again or ""), None


def add(
    rt: Runtime, name: str, role: str, routes: list[str], password: str | None, again: str | None, generate: bool
) -> tuple[dict[str, Any], str | None]:
    """`contentq users add`: the new user and the generated password (None when one was typed)."""
    with refused_values():
        users.check_name(name.strip())
        users.check_routes(rt, role, routes)  # before the password is looked at, as the CLI does
    if users.find(rt, name.strip()) is not None:  # the core refuses it too; said before a password is asked for
        raise ConflictError(f"user {name.strip()!r} exists already; reset their password on the Users page instead")
    secret, shown = _password(password, again, generate)
    row = checked(users.add_user, rt, name.strip(), role, secret, routes)
    return row, shown


def change(rt: Runtime, name: str, role: str | None, routes: list[str] | None) -> dict[str, Any]:
    """`contentq users role` / `users routes`: effective at the user's next request."""
    return checked(users.set_role, rt, name, role, routes)


def reset_password(
    rt: Runtime, name: str, password: str | None, again: str | None, generate: bool
) -> tuple[int, str | None]:
    """`contentq users passwd`: how many of the user's sessions ended, and the generated password if any."""
    users.get_user(rt, name)
    secret, shown = _password(password, again, generate)
    return checked(users.set_password, rt, name, secret), shown


def remove(rt: Runtime, person: Person | None, name: str, confirm_self: bool) -> dict[str, Any]:
    """`contentq users remove`; removing yourself needs `confirm_self` (your sessions and tokens end with you)."""
    row = users.get_user(rt, name)
    if person is not None and person.via != "shared" and person.name == row["name"] and not confirm_self:
        raise ConflictError(
            f"this removes you ({row['name']}): your sessions and tokens end with it; confirm that you mean yourself"
        )
    users.remove_user(rt, row["name"])
    return {"name": row["name"], "role": row["role"]}


def issue_token(rt: Runtime, name: str, label: str | None) -> dict[str, Any]:
    """`contentq users token NAME`: the row and the token, whose value is shown this once."""
    return checked(users.new_token, rt, name, label)


def revoke_token(rt: Runtime, name: str, token_id: int) -> None:
    users.revoke_tokens(rt, name, token_id)


def revoke_session(rt: Runtime, name: str, session_id: str) -> dict[str, Any]:
    """`contentq users sessions --revoke ID`, for a session of this user (404 for anybody else's)."""
    users.get_user(rt, name)
    prefix = session_id.strip().lower()
    if not any(s["id"].startswith(prefix) for s in people_sessions.sessions(rt, name)):
        raise NotFoundError(f"{name} has no session {session_id!r} (it may have ended)")
    return checked(people_sessions.revoke, rt, prefix)


def logout(rt: Runtime, name: str) -> int:
    """`contentq users logout NAME`: every session of the user ends."""
    return people_sessions.revoke_user(rt, users.get_user(rt, name)["name"])


class ShownOnce:
    """A secret the page shows on purpose, once (a new API token, a generated password). Every other value a
    page shows passes redact (app._finalize), which would mask exactly these: this one is escaped, not masked."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __html__(self) -> Markup:
        return escape(self.value)
