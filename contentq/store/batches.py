"""Rewrite batches (the OpenAI Batch API) and their items, one per post: the SQL.

A batch is `gathering` while rewrite jobs add their posts to it; its parent job takes it (`submitting`), uploads
the lines and follows the provider's status from then on. An item is `queued` until the batch is over, then
`answered` (its line's completion is kept for the post's child job to validate), `failed` (the line came back
with an error) or `direct` (the post fell back to a direct call: the batch failed, expired, or its deadline
came); the child job marks it `done` once it used the answer. An item sent for a text the donor edited since is
`superseded`: its line is ignored.
"""

from __future__ import annotations

from typing import Any

from contentq.clock import iso
from contentq.errors import NotFoundError
from contentq.store.db import Store

ENDED = ("completed", "failed", "expired", "cancelled")
"""The provider's final statuses of a batch."""

OPEN_ITEM = ("queued",)
"""An item still waiting for its batch."""


def custom_id(batch_id: int, post_id: int) -> str:
    """The line's id in the batch's files (unique in a batch: a post is in it once)."""
    return f"cq-{batch_id}-{post_id}"


def add_item(
    store: Store,
    *,
    post_id: int,
    route: str,
    model: str,
    body: str,
    source_hash: str,
    deadline: str | None,
    max_lines: int,
    estimate: float = 0.0,
) -> tuple[dict[str, Any], bool]:
    """Put the post's request line in the gathering batch of `model` (a new one when there is none, or it is
    full); returns the item and whether the batch is new (its parent job is then to be enqueued). A post
    already queued in a batch keeps that item."""
    stamp = iso()
    with store.transaction() as conn:
        found = conn.execute(
            "SELECT i.id FROM batch_items AS i JOIN rewrite_batches AS b ON b.id = i.batch_id"
            " WHERE i.post_id = ? AND i.status = 'queued' AND i.source_hash = ?"
            f" AND b.status NOT IN ({', '.join('?' for _ in ENDED)}) ORDER BY i.id DESC LIMIT 1",
            (post_id, source_hash, *ENDED),
        ).fetchone()
        created = False
        gathering = conn.execute(
            "SELECT i.id FROM batch_items AS i JOIN rewrite_batches AS b ON b.id = i.batch_id"
            " WHERE i.post_id = ? AND i.status = 'queued' AND b.status = 'gathering' AND b.model = ?",
            (post_id, model),
        ).fetchone()
        if found is not None:
            item_id = int(found[0])
        elif gathering is not None:  # the donor edited the post before its batch left: the new text instead
            item_id = int(gathering[0])
            conn.execute(
                "UPDATE batch_items SET body = ?, source_hash = ?, deadline = ?, estimate = ?, updated_at = ?"
                " WHERE id = ?",
                (body, source_hash, deadline, estimate, stamp, item_id),
            )
        else:
            # A line already sent for an older text of the post is of no use any more.
            conn.execute(
                "UPDATE batch_items SET status = 'superseded', error = 'the donor edited the post', updated_at = ?"
                " WHERE post_id = ? AND status = 'queued'",
                (stamp, post_id),
            )
            row = conn.execute(
                "SELECT id FROM rewrite_batches WHERE status = 'gathering' AND model = ? AND lines < ?"
                " ORDER BY id LIMIT 1",
                (model, max_lines),
            ).fetchone()
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO rewrite_batches (model, status, created_at, updated_at) VALUES (?, 'gathering', ?, ?)",
                    (model, stamp, stamp),
                )
                assert cursor.lastrowid is not None
                batch_id, created = int(cursor.lastrowid), True
            else:
                batch_id = int(row[0])
            cursor = conn.execute(
                "INSERT INTO batch_items (batch_id, post_id, route, custom_id, status, body, source_hash, deadline,"
                " estimate, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    post_id,
                    route,
                    custom_id(batch_id, post_id),
                    body,
                    source_hash,
                    deadline,
                    estimate,
                    stamp,
                    stamp,
                ),  # fmt: skip
            )
            assert cursor.lastrowid is not None
            item_id = int(cursor.lastrowid)
            conn.execute("UPDATE rewrite_batches SET lines = lines + 1, updated_at = ? WHERE id = ?", (stamp, batch_id))
    return get_item(store, item_id), created


def get_item(store: Store, item_id: int) -> dict[str, Any]:
    row = store.one("SELECT * FROM batch_items WHERE id = ?", (item_id,))
    if row is None:
        raise NotFoundError(f"no batch item {item_id}")
    return row


def get_batch(store: Store, batch_id: int) -> dict[str, Any]:
    row = store.one("SELECT * FROM rewrite_batches WHERE id = ?", (batch_id,))
    if row is None:
        raise NotFoundError(f"no rewrite batch {batch_id}; `contentq rewrite batches` lists them")
    return row


def list_batches(store: Store, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest batches first, with their items counted by status."""
    return store.query(
        "SELECT b.*, COALESCE(SUM(i.status = 'queued'), 0) AS queued,"
        " COALESCE(SUM(i.status IN ('answered', 'done')), 0) AS answered,"
        " COALESCE(SUM(i.status = 'failed'), 0) AS failed, COALESCE(SUM(i.status = 'direct'), 0) AS direct"
        " FROM rewrite_batches AS b LEFT JOIN batch_items AS i ON i.batch_id = b.id"
        " GROUP BY b.id ORDER BY b.id DESC LIMIT ?",
        (limit,),
    )


def set_batch_job(store: Store, batch_id: int, job_id: str) -> None:
    store.execute("UPDATE rewrite_batches SET job_id = ?, updated_at = ? WHERE id = ?", (job_id, iso(), batch_id))


def take_for_submit(store: Store, batch_id: int) -> list[dict[str, Any]] | None:
    """Close the batch to new posts (gathering → submitting) and return its queued items; None when it was not
    gathering (a run of its job that stopped after this, or another run)."""
    with store.transaction() as conn:
        cursor = conn.execute(
            "UPDATE rewrite_batches SET status = 'submitting', updated_at = ? WHERE id = ? AND status = 'gathering'",
            (iso(), batch_id),
        )
        if cursor.rowcount != 1:
            return None
    return items_of(store, batch_id, "queued")


def items_of(store: Store, batch_id: int, *statuses: str) -> list[dict[str, Any]]:
    where = f" AND status IN ({', '.join('?' for _ in statuses)})" if statuses else ""
    return store.query(f"SELECT * FROM batch_items WHERE batch_id = ?{where} ORDER BY id", (batch_id, *statuses))


def update_batch(store: Store, batch_id: int, **columns: Any) -> None:
    """Set the provider's view of the batch (status, ids, error, lines); `ended_at` when its status is final."""
    allowed = {"status", "provider_id", "input_file_id", "output_file_id", "error_file_id", "error", "lines"}
    unknown = set(columns) - allowed
    if unknown:
        raise ValueError(f"not a batch column: {', '.join(sorted(unknown))}")
    stamp = iso()
    values = dict(columns, updated_at=stamp)
    if columns.get("status") == "validating" or "provider_id" in columns:
        values["submitted_at"] = stamp
    if columns.get("status") in ENDED:
        values["ended_at"] = stamp
    sets = ", ".join(f"{name} = ?" for name in values)
    store.execute(f"UPDATE rewrite_batches SET {sets} WHERE id = ?", (*values.values(), batch_id))


def settle_item(
    store: Store, batch_id: int, custom: str, status: str, *, answer: str | None = None, error: str | None = None
) -> bool:
    """A queued item's outcome from the batch's files (answered, failed); False when it had left 'queued'
    (it fell back to a direct call before the batch was over)."""
    cursor = store.execute(
        "UPDATE batch_items SET status = ?, answer = ?, error = ?, updated_at = ?"
        " WHERE batch_id = ? AND custom_id = ? AND status = 'queued'",
        (status, answer, error[:500] if error else None, iso(), batch_id, custom),
    )
    return cursor.rowcount == 1


def set_items(store: Store, item_ids: list[int], status: str, *, error: str | None = None, only: str = "") -> int:
    """Move items to `status` (from `only` when given); returns how many moved."""
    if not item_ids:
        return 0
    marks = ", ".join("?" for _ in item_ids)
    guard = " AND status = ?" if only else ""
    params: list[Any] = [status, error[:500] if error else None, iso(), *item_ids]
    if only:
        params.append(only)
    cursor = store.execute(
        f"UPDATE batch_items SET status = ?, error = COALESCE(?, error), updated_at = ? WHERE id IN ({marks}){guard}",
        params,
    )
    return cursor.rowcount


def queued_ahead(store: Store, route: str) -> int:
    """The route's posts waiting in batches: each will take a slot before a post added now."""
    value = store.scalar(
        "SELECT COUNT(*) FROM batch_items AS i JOIN rewrite_batches AS b ON b.id = i.batch_id"
        f" WHERE i.route = ? AND i.status = 'queued' AND b.status NOT IN ({', '.join('?' for _ in ENDED)})",
        (route, *ENDED),
    )
    return int(value or 0)


def item_of_post(store: Store, post_id: int) -> dict[str, Any] | None:
    """The post's newest batch item."""
    return store.one("SELECT * FROM batch_items WHERE post_id = ? ORDER BY id DESC LIMIT 1", (post_id,))
