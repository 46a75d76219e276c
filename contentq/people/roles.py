"""Who may do what: the one place the panel's API, its pages and the bot ask.

A person has a role. *owner*: everything. *editor*: reads everything but usage and the audit, and acts on posts
(approve, reject, edit, reschedule, unschedule, publish now) of the routes assigned to them. *viewer*: reads,
changes nothing. Each endpoint declares the one Permission it needs (contentq/web/deps.py `needs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Permission(StrEnum):
    PUBLIC = "public"
    """No login: the login form itself, static files."""
    READ = "read"
    """Every page and listing (posts, jobs, queues, workers, sources, schedule, stats, live events)."""
    POSTS = "posts"
    """Approve, reject, edit, reschedule, unschedule, publish now: an editor only on their routes."""
    JOBS = "jobs"
    """Create, retry, cancel jobs (one or in bulk)."""
    QUEUES = "queues"
    """Pause and resume queues."""
    USAGE = "usage"
    """LLM tokens and what they cost."""
    ADMIN = "admin"
    """Users, their sessions and tokens, the audit trail."""


ROLES: dict[str, frozenset[Permission]] = {
    "owner": frozenset(Permission),
    "editor": frozenset({Permission.PUBLIC, Permission.READ, Permission.POSTS}),
    "viewer": frozenset({Permission.PUBLIC, Permission.READ}),
}
"""Each role's permissions."""

ROUTE_SCOPED = frozenset({Permission.POSTS})
"""Permissions an editor holds only on the routes assigned to them."""

WHAT = {
    Permission.READ: "see the panel",
    Permission.POSTS: "act on posts",
    Permission.JOBS: "create, retry or cancel jobs",
    Permission.QUEUES: "pause or resume queues",
    Permission.USAGE: "see LLM usage and costs",
    Permission.ADMIN: "manage users, sessions and the audit trail",
}


@dataclass(frozen=True)
class Person:
    """Who a request (or a bot's update) comes from."""

    name: str
    role: str
    routes: tuple[str, ...] = field(default=())
    via: str = "password"
    """password (a panel session), token (a user's API token), shared (the panel's token, before any owner)."""

    def may(self, permission: Permission, route: str | None = None) -> bool:
        return refusal(self, permission, route) is None


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"no role {role!r}: owner, editor or viewer")
    return role


def refusal(person: Person, permission: Permission, route: str | None = None) -> str | None:
    """None when `person` may; else the sentence a 403 says (what the role allows, whom to ask)."""
    if permission not in ROLES.get(person.role, frozenset()):
        return (
            f"forbidden: {person.name} is {_a(person.role)} {person.role} and may not"
            f" {WHAT.get(permission, permission)}; ask an owner (`contentq users add … --role`)"
        )
    if person.role != "owner" and permission in ROUTE_SCOPED and route is not None and route not in person.routes:
        mine = ", ".join(person.routes) or "none"
        return (
            f"forbidden: {person.name} acts on posts of the routes assigned to them ({mine}) and this post is on"
            f" route {route!r}; ask an owner (`contentq users routes {person.name} …`)"
        )
    return None


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
