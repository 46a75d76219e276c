"""Panel users: add, change, remove; passwords (argon2id through argon2-cffi) and per-user API tokens.

A password is kept as its argon2id hash (argon2-cffi's PasswordHasher, RFC 9106's parameters), re-hashed at the
next login when the parameters change. An API token is 256 random bits shown once (`cq_…`); only its SHA-256
is kept — a hash that is slow on purpose adds nothing to a value nobody can guess, and would make every API
request pay for it. Every change is in the audit trail (contentq.store.audit) with whoever made it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from contentq.clock import iso
from contentq.errors import ConflictError, ContentqError, NotFoundError
from contentq.people.roles import ROLES, Person
from contentq.redact import register_secret
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.store import audit
from contentq.store import users as db
from contentq.store.web_sessions import end_sessions_of

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
TOKEN_PREFIX = "cq_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
LABEL = re.compile(r"^[^\x00-\x1f\x7f]{1,60}$")
GENERATED_BYTES = 15
"""A generated password: 120 random bits, 20 characters of URL-safe base64."""


@cache
def hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def dummy_hash() -> str:
    """A hash of nothing anybody knows: an unknown name's login verifies against it, so it costs what a known
    name's costs and the answer's time does not tell whether the name exists."""
    return hasher().hash(secrets.token_urlsafe(32))


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ContentqError(
            f"user name {name!r} is not usable: 1–40 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ContentqError(f"the password is {len(password)} characters; use at least {MIN_PASSWORD}")
    if len(password) > MAX_PASSWORD:
        raise ContentqError(f"the password is over {MAX_PASSWORD} characters")
    return password


def check_password_pair(password: str, again: str) -> str:
    """A password typed twice (the panel's form, the CLI's prompt): the same both times, and usable."""
    if password != again:
        raise ContentqError("the two passwords differ; type the same password twice")
    return check_password(password)


def generate_password() -> str:
    """A password for someone to change later, shown once by whoever made it."""
    return secrets.token_urlsafe(GENERATED_BYTES)


def check_label(label: str | None) -> str | None:
    """An API token's label: what it is for (ci, grafana, alice's phone); none is fine."""
    label = (label or "").strip() or None
    if label is not None and not LABEL.match(label):
        raise ContentqError("a token's label is 1–60 characters on one line (what it is for: ci, a phone)")
    return label


def check_routes(runtime: Runtime, role: str, routes: list[str]) -> list[str]:
    """An editor's routes, each a route of contentq.toml (when there is one); other roles take none."""
    routes = sorted({r.strip() for r in routes if r.strip()})
    if role != "editor":
        if routes:
            raise ContentqError(f"only an editor has routes; {role}s act on every route (or none)")
        return []
    if runtime.settings.config_path.exists():
        known = set(routes_config(runtime).routes)
        unknown = [r for r in routes if r not in known]
        if unknown:
            raise ContentqError(
                f"no route {', '.join(map(repr, unknown))} in {runtime.settings.config_path}; the routes are: "
                + (", ".join(sorted(known)) or "none")
            )
    return routes


def _describe(role: str, routes: list[str]) -> str:
    return f"role {role}" + (f", routes {', '.join(routes)}" if routes else "")


def _role(role: str) -> str:
    if role not in ROLES:
        raise ContentqError(f"no role {role!r}: owner, editor or viewer")
    return role


def get_user(runtime: Runtime, name: str) -> dict[str, Any]:
    row = db.find_user(runtime.store, name)
    if row is None:
        raise NotFoundError(f"no user {name!r}; `contentq users list` shows them")
    return row


def add_user(runtime: Runtime, name: str, role: str, password: str, routes: list[str] | None = None) -> dict[str, Any]:
    check_name(name)
    _role(role)
    routes = check_routes(runtime, role, routes or [])
    check_password(password)
    register_secret(password)
    if not db.add_user(runtime.store, name, role, hasher().hash(password), routes, iso()):
        raise ConflictError(f"user {name!r} exists already; `contentq users passwd {name}` changes its password")
    audit.record(runtime.store, "user", name, "added", _describe(role, routes))
    return get_user(runtime, name)


def set_password(runtime: Runtime, name: str, password: str) -> int:
    """A new password; the user's sessions end (a stolen cookie dies with the old password): how many did."""
    get_user(runtime, name)
    check_password(password)
    register_secret(password)
    db.set_password_hash(runtime.store, name, hasher().hash(password), iso())
    ended = end_sessions_of(runtime.store, name)
    audit.record(runtime.store, "user", name, "password_changed", f"{ended} session(s) ended")
    return ended


def set_role(runtime: Runtime, name: str, role: str | None = None, routes: list[str] | None = None) -> dict[str, Any]:
    """Change a user's role or an editor's routes (both take effect at the user's next request)."""
    row = get_user(runtime, name)
    role = _role(role or row["role"])
    routes = check_routes(runtime, role, row["routes"] if routes is None and role == row["role"] else routes or [])
    if row["role"] == "owner" and role != "owner" and db.count_owners(runtime.store) == 1:
        raise ConflictError(f"{name} is the only owner; add another owner first")
    db.set_role(runtime.store, row["name"], role, routes, iso())
    audit.record(runtime.store, "user", row["name"], "changed", _describe(role, routes))
    return get_user(runtime, name)


def remove_user(runtime: Runtime, name: str) -> None:
    """The user, its tokens and its sessions; the last owner stays (the panel would have nobody to run it)."""
    row = get_user(runtime, name)
    if row["role"] == "owner" and db.count_owners(runtime.store) == 1 and len(db.list_users(runtime.store)) > 1:
        raise ConflictError(f"{name} is the only owner of users who remain; make another user owner first")
    db.remove_user(runtime.store, row["name"])
    audit.record(runtime.store, "user", row["name"], "removed", f"was {row['role']}")


def list_users(runtime: Runtime) -> list[dict[str, Any]]:
    rows = db.list_users(runtime.store)
    for row in rows:
        row.pop("password_hash", None)
    return rows


def person(row: dict[str, Any], via: str) -> Person:
    return Person(name=str(row["name"]), role=str(row["role"]), routes=tuple(row["routes"]), via=via)


# -- API tokens ---------------------------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(runtime: Runtime, name: str, label: str | None = None) -> str:
    """A new API token for the user: returned once, never stored (only its SHA-256 is)."""
    return str(new_token(runtime, name, label)["token"])


def new_token(runtime: Runtime, name: str, label: str | None = None) -> dict[str, Any]:
    """`issue_token` with the row it made: id, label, hint, created_at and the token itself (shown once)."""
    row = get_user(runtime, name)
    label = check_label(label)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    stamp = iso()
    token_id = db.add_token(runtime.store, row["name"], _token_hash(token), token[-4:], stamp, label)
    named = f" {label!r}" if label else ""
    audit.record(runtime.store, "user", row["name"], "token_issued", f"token {token_id}{named} (…{token[-4:]})")
    return {"id": token_id, "user": row["name"], "label": label, "hint": token[-4:], "created_at": stamp,
            "last_used_at": None, "token": token}  # fmt: skip


def revoke_tokens(runtime: Runtime, name: str, token_id: int | None = None) -> int:
    row = get_user(runtime, name)
    count = db.revoke_tokens(runtime.store, row["name"], iso(), token_id)
    if token_id is not None and count == 0:
        raise NotFoundError(f"{name} has no live token {token_id}; `contentq users token {name} --list` shows them")
    what = f"token {token_id}" if token_id else f"{count} token(s)"
    audit.record(runtime.store, "user", row["name"], "token_revoked", what)
    return count


def list_tokens(runtime: Runtime, name: str) -> list[dict[str, Any]]:
    return db.list_tokens(runtime.store, get_user(runtime, name)["name"])


def token_person(runtime: Runtime, token: str) -> Person | None:
    """The user an API token belongs to (None: not a user's token, or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = db.find_token(runtime.store, _token_hash(token))
    if row is None:
        return None
    stamp = iso()
    if (row["last_used_at"] or "")[:16] != stamp[:16]:  # at most one write a minute
        db.touch_token(runtime.store, row["token_id"], stamp)
    return person(row, "token")


def owner_exists(runtime: Runtime) -> bool:
    return db.owner_exists(runtime.store)


def verify_password(row: dict[str, Any] | None, password: str) -> bool:
    """Whether `password` is the user's; an unknown user (None) is checked against the dummy hash all the same."""
    stored = row["password_hash"] if row is not None and row["password_hash"] else dummy_hash()
    try:
        hasher().verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return row is not None


def rehash_if_needed(runtime: Runtime, row: dict[str, Any], password: str) -> None:
    """After a login: a hash made with older parameters is replaced by one with today's."""
    if hasher().check_needs_rehash(row["password_hash"]):
        db.set_password_hash(runtime.store, row["name"], hasher().hash(password), iso())


def find(runtime: Runtime, name: str) -> dict[str, Any] | None:
    """The user of that name, or None."""
    return db.find_user(runtime.store, name)
