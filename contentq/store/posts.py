"""Posts and their state machine; every state change is a compare-and-set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contentq.clock import iso
from contentq.errors import NotFoundError
from contentq.redact import redact
from contentq.store.db import Store

STATES = (
    "collected",
    "rewriting",
    "rewritten",
    "awaiting_approval",
    "scheduled",
    "publishing",
    "published",
    "duplicate",
    "filtered",
    "failed",
    "cancelled",
    "rejected",
)


def get_post(store: Store, post_id: int) -> dict[str, Any]:
    row = store.one("SELECT * FROM posts WHERE id = ?", (post_id,))
    if row is None:
        raise NotFoundError(f"no post {post_id}; `contentq posts list` shows the posts")
    return row


def transition(store: Store, post_id: int, from_states: str | Iterable[str], to_state: str, **fields: Any) -> bool:
    """Move a post to `to_state` only if it is in one of `from_states`; True when this call moved it."""
    if to_state not in STATES:
        raise ValueError(f"unknown post state {to_state!r}")
    olds = [from_states] if isinstance(from_states, str) else list(from_states)
    if isinstance(fields.get("state_reason"), str):  # reasons quote provider errors: the sink masks secrets
        fields["state_reason"] = redact(fields["state_reason"])
    fields = {**fields, "state": to_state, "updated_at": iso()}
    assignments = ", ".join(f"{column} = ?" for column in fields)
    placeholders = ", ".join("?" for _ in olds)
    with store.transaction() as conn:
        cursor = conn.execute(
            f"UPDATE posts SET {assignments} WHERE id = ? AND state IN ({placeholders})",
            [*fields.values(), post_id, *olds],
        )
        return cursor.rowcount == 1


def page_posts(
    store: Store,
    *,
    state: str | None = None,
    route: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> tuple[list[dict[str, Any]], int | None, int]:
    """One page of posts, newest first, keyset-paginated on id: (rows without blobs, next cursor, total)."""
    where, params = _filters(state, route)
    filtered = " WHERE " + " AND ".join(where) if where else ""
    total = int(store.scalar("SELECT COUNT(*) FROM posts" + filtered, params) or 0)
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    sql = (
        "SELECT id, route, state, state_reason, kind, title, substr(COALESCE(rewrite_html, text_html), 1, 300)"
        " AS snippet, scheduled_at, published_at, link, updated_at FROM posts"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY id DESC LIMIT ?"
    )
    rows = store.query(sql, [*params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None), total


def posts_changed_after(store: Store, change_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Post state changes after `change_id` in commit order, oldest first: the live post feed of the web panel.

    `post_changes` is filled by triggers on posts in the writing transaction (migration 112), so its ids follow
    commit order whatever clock the writer read. A change of a post purged since is left out.
    """
    return store.query(
        "SELECT c.id AS change_id, p.id, p.route, c.state, p.state_reason, c.at AS updated_at"
        " FROM post_changes AS c JOIN posts AS p ON p.id = c.post_id WHERE c.id > ? ORDER BY c.id LIMIT ?",
        (change_id, limit),
    )


def last_post_change(store: Store) -> int:
    """The newest post change id (0: none yet): where a feed that starts now begins."""
    return int(store.scalar("SELECT COALESCE(MAX(id), 0) FROM post_changes") or 0)


def post_media_rows(store: Store, post_id: int) -> list[dict[str, Any]]:
    return store.query(
        "SELECT id, origin, kind, path, mime, size, width, height FROM media WHERE post_id = ?"
        " ORDER BY origin = 'generated', position, id",
        (post_id,),
    )


def media_file(store: Store, media_id: int) -> dict[str, Any] | None:
    """A media row's file (path relative to the media directory) and stored type, for the panel's /media."""
    return store.one("SELECT path, mime FROM media WHERE id = ?", (media_id,))


def _filters(state: str | None, route: str | None) -> tuple[list[str], list[Any]]:
    """The WHERE conditions and their parameters for posts of one state and one route."""
    where: list[str] = []
    params: list[Any] = []
    if state:
        where.append("state = ?")
        params.append(state)
    if route:
        where.append("route = ?")
        params.append(route)
    return where, params


def list_posts(
    store: Store, *, state: str | None = None, route: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Posts with every column, newest first, optionally of one state and one route."""
    where, params = _filters(state, route)
    filtered = " WHERE " + " AND ".join(where) if where else ""
    return store.query(f"SELECT * FROM posts{filtered} ORDER BY id DESC LIMIT ?", [*params, limit])
