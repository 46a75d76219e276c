"""Who did what: the audit trail is read from three places, each written where the action happens.

- `post_changes`: every move of a post, with its actor (contentq.lifecycle);
- `job_events`: a job's events written by someone other than the job (retry, cancel), with that actor;
- `audit_events`: what is neither (a queue paused, a post's text edited, users, tokens, sessions, logins).

`list_audit` reads the rows of people (`cli:`, `web:`, `bot:` actors) from all three, newest first.
"""

from __future__ import annotations

from typing import Any

from contentq import actors
from contentq.clock import iso
from contentq.redact import redact
from contentq.store.db import Store

PEOPLE = ("cli", "web", "bot")
"""The kinds of actor that are people (contentq.actors.KINDS): what the audit lists."""

KINDS = ("post", "job", "queue", "user", "session", "login")
"""What an audit row is about."""

_PERSON_SQL = "(" + " OR ".join(f"actor LIKE '{kind}:%'" for kind in PEOPLE) + ")"

AUDIT_SQL = f"""
    SELECT 'p' || id AS id, at, actor, 'post' AS kind, CAST(post_id AS TEXT) AS target, event AS action,
           COALESCE(from_state, '') || ' → ' || state || COALESCE(': ' || reason, '') AS detail
    FROM post_changes WHERE actor IS NOT NULL AND event IS NOT NULL AND {_PERSON_SQL}
    UNION ALL
    SELECT 'j' || id, at, actor, 'job', job_id, event, message
    FROM job_events WHERE actor IS NOT NULL AND {_PERSON_SQL}
    UNION ALL
    SELECT 'a' || id, at, actor, kind, target, action, detail FROM audit_events
"""


def record(store: Store, kind: str, target: str | None, action: str, detail: str = "") -> None:
    """An action that is neither a post's move nor a job's event, by whoever is acting now."""
    if kind not in KINDS:
        raise ValueError(f"audit kind {kind!r} is not one of {', '.join(KINDS)}")
    store.execute(
        "INSERT INTO audit_events (at, actor, kind, target, action, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (iso(), actors.current(), kind, target, action, redact(detail)[:1000] or None),
    )


def actions_on(store: Store, kind: str, target: str) -> list[dict[str, Any]]:
    """What people did to one post (or job, user …) besides its moves and events, oldest first: a text edited."""
    return store.query(
        "SELECT at, actor, action, detail FROM audit_events WHERE kind = ? AND target = ? ORDER BY id", (kind, target)
    )


def list_audit(
    store: Store,
    *,
    actor: str | None = None,
    since: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """Rows newest first. `actor` matches a whole actor (`web:alice`) or its start before `@` (`web:token` matches
    `web:token@10.0.0.1`) or a kind alone (`cli`); `since` and `before` are ISO times; `kind` one of KINDS."""
    where, params = [], []
    if actor:
        if ":" in actor:
            where.append("(actor = ? OR actor LIKE ? ESCAPE '\\')")
            params += [actor, actor.replace("%", "\\%").replace("_", "\\_") + "@%"]
        else:
            where.append("actor LIKE ? ESCAPE '\\'")
            params.append(actor.replace("%", "\\%").replace("_", "\\_") + ":%")
    if since:
        where.append("at >= ?")
        params.append(since)
    if before:
        where.append("at < ?")
        params.append(before)
    if kind:
        where.append("kind = ?")
        params.append(kind)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return store.query(f"SELECT * FROM ({AUDIT_SQL}) {clause} ORDER BY at DESC, id DESC LIMIT ?", (*params, limit))
