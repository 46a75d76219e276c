"""Posts: reading them, and the SQL of their moves and history (the state machine is `contentq.lifecycle`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from contentq.clock import iso
from contentq.errors import NotFoundError
from contentq.store.db import Store


def get_post(store: Store, post_id: int) -> dict[str, Any]:
    row = store.one("SELECT * FROM posts WHERE id = ?", (post_id,))
    if row is None:
        raise NotFoundError(f"no post {post_id}; `contentq posts list` shows the posts")
    return row


def change_state(
    conn: sqlite3.Connection,
    post_id: int,
    sources: Iterable[str],
    target: str,
    fields: dict[str, Any],
    *,
    event: str,
    actor: str,
    reason: str | None,
) -> str | None:
    """The SQL of one move, inside the caller's write transaction: only `contentq.lifecycle` calls this
    (tests/test_lifecycle.py checks). If the post is in one of `sources`, it takes `target` and `fields`, and
    the move is added to its history; returns the state it left, or None when it was in none of them."""
    olds = list(sources)
    row = conn.execute("SELECT state FROM posts WHERE id = ?", (post_id,)).fetchone()
    if row is None or row[0] not in olds:
        return None
    stamp = iso()
    # The history row first: the trigger on posts (migration 122) then sees the move recorded and adds none.
    # Its AUTOINCREMENT id, given inside the writing transaction, follows commit order: the web feed's cursor.
    conn.execute(
        "INSERT INTO post_changes (post_id, from_state, state, event, actor, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (post_id, row[0], target, event, actor, reason, stamp),
    )
    values = {**fields, "state": target, "state_reason": reason, "updated_at": stamp}
    assignments = ", ".join(f"{column} = ?" for column in values)
    conn.execute(f"UPDATE posts SET {assignments} WHERE id = ? AND state = ?", [*values.values(), post_id, row[0]])
    return str(row[0])


def record_entry(conn: sqlite3.Connection, post_id: int, event: str, actor: str, reason: str | None) -> str | None:
    """Say how a post entered, in the transaction that inserted it (whose trigger wrote its first history row):
    only `contentq.lifecycle` calls this. Returns the state the post was stored in (None: no such row)."""
    row = conn.execute(
        "SELECT id, state FROM post_changes WHERE post_id = ? AND from_state IS NULL AND event IS NULL"
        " ORDER BY id DESC LIMIT 1",
        (post_id,),
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE post_changes SET event = ?, actor = ?, reason = ? WHERE id = ?", (event, actor, reason, row[0])
    )
    return str(row[1])


def post_history(store: Store, post_id: int) -> list[dict[str, Any]]:
    """Every recorded move of the post, oldest first (rows from before migration 122 have no event or actor)."""
    return store.query(
        "SELECT id, at, from_state, state, event, actor, reason FROM post_changes WHERE post_id = ? ORDER BY id",
        (post_id,),
    )


def has_generated_image(store: Store, post_id: int) -> bool:
    return bool(
        store.scalar("SELECT 1 FROM media WHERE post_id = ? AND origin = 'generated' AND path IS NOT NULL", (post_id,))
    )


def image_job_status(store: Store, post_id: int) -> str | None:
    """The status of the post's newest imagegen job (None: it has none)."""
    status = store.scalar(
        "SELECT status FROM jobs WHERE kind = 'imagegen' AND key = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (str(post_id),),
    )
    return None if status is None else str(status)


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

    `post_changes` (the posts' history) is written in the transaction of each move (`change_state`, or the
    triggers of migrations 112 and 122 for a new post and a change made by hand), so its ids follow commit order
    whatever clock the writer read. A change of a post purged since is left out.
    """
    return store.query(
        "SELECT c.id AS change_id, p.id, p.route, c.state, p.state_reason, c.at AS updated_at, c.from_state, c.event,"
        " c.actor, c.reason"
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
