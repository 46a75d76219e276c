"""The sends ledger: every part of a post, recorded before it is sent, with the random ids it goes with.

A row per (post, target, round, part): `attempting` (committed before the request leaves), then `sent`
(with the message ids), `failed` (refused before anything was posted) or `deleted` (the round was taken
back). The random ids are derived from (post, target, round, part, item), so a resend after a crash
repeats them and Telegram refuses it instead of posting twice; a new round gets fresh ones.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from contentq.clock import iso
from contentq.store import Store

SendKey = tuple[int, str, int, int]
"""(post id, target, round, part): one row of the ledger."""

OUT = ("sent", "attempting")
"""Statuses of a part that is out, or may be."""


def random_id_for(post_id: int, target_id: int, round_no: int, part: int, item: int) -> int:
    """A deterministic, non-zero signed 64-bit id for one sent item."""
    digest = hashlib.sha256(f"contentq/{post_id}/{target_id}/{round_no}/{part}/{item}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True) or 1


def message_ids_of(row: dict[str, Any]) -> list[int]:
    return [int(i) for i in json.loads(row["message_ids"] or "[]")]


def send_row(store: Store, post_id: int, target: str, round_no: int, part: int) -> dict[str, Any] | None:
    return store.one(
        "SELECT * FROM sends WHERE post_id = ? AND target = ? AND round = ? AND part = ?",
        (post_id, target, round_no, part),
    )


def record_attempt(
    store: Store, post_id: int, target: str, round_no: int, part: int, kind: str, random_ids: list[int]
) -> None:
    """Committed before the request leaves: a crash after it leaves an `attempting` row behind. A retry keeps
    `created_at`, the first attempt: an uncertain send is looked for from then on."""
    stamp = iso()
    store.execute(
        "INSERT INTO sends (post_id, target, round, part, kind, random_id, random_ids, status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'attempting', ?, ?)"
        " ON CONFLICT (post_id, target, round, part) DO UPDATE SET status = 'attempting', error = NULL,"
        " updated_at = excluded.updated_at",
        (post_id, target, round_no, part, kind, random_ids[0], json.dumps(random_ids), stamp, stamp),
    )


def record_sent(store: Store, key: SendKey, message_ids: list[int]) -> None:
    store.execute(
        "UPDATE sends SET status = 'sent', message_ids = ?, error = NULL, updated_at = ?"
        " WHERE post_id = ? AND target = ? AND round = ? AND part = ?",
        (json.dumps(message_ids), iso(), *key),
    )


def record_refused(store: Store, key: SendKey, error: str) -> None:
    """The request was refused before anything was posted (flood wait, bad request): not uncertain."""
    store.execute(
        "UPDATE sends SET status = 'failed', error = ?, updated_at = ?"
        " WHERE post_id = ? AND target = ? AND round = ? AND part = ?",
        (error[:500], iso(), *key),
    )


def recorded_message_ids(store: Store, target: str) -> set[int]:
    """Message ids of the target recorded for any send (any post, any round): never another part's."""
    rows = store.query(
        "SELECT message_ids FROM sends WHERE target = ? AND message_ids IS NOT NULL AND message_ids != '[]'",
        (target,),
    )
    return {i for r in rows for i in message_ids_of(r)}


def sends_of(store: Store, post_id: int) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM sends WHERE post_id = ? ORDER BY round, part", (post_id,))


def round_out(store: Store, post_id: int, target: str, round_no: int) -> list[dict[str, Any]]:
    """The round's parts that are out, or may be (sent or attempting)."""
    return store.query(
        "SELECT * FROM sends WHERE post_id = ? AND target = ? AND round = ? AND status IN (?, ?)",
        (post_id, target, round_no, *OUT),
    )


def count_round(store: Store, post_id: int, target: str, round_no: int, statuses: tuple[str, ...] = OUT) -> int:
    marks = ", ".join("?" for _ in statuses)
    return int(
        store.scalar(
            f"SELECT COUNT(*) FROM sends WHERE post_id = ? AND target = ? AND round = ? AND status IN ({marks})",
            (post_id, target, round_no, *statuses),
        )
    )


def take_back_round(store: Store, post_id: int, target: str, round_no: int) -> None:
    """The round's parts were deleted from the channel: marked so, and the post's next round gets new ids."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE sends SET status = 'deleted', updated_at = ? WHERE post_id = ? AND target = ? AND round = ?"
            " AND status IN (?, ?)",
            (iso(), post_id, target, round_no, *OUT),
        )
        conn.execute(
            "UPDATE posts SET publish_round = ? WHERE id = ? AND publish_round = ?",
            (round_no + 1, post_id, round_no),
        )


def count_unreachable(store: Store, post_id: int) -> int:
    """One more try that found Telegram out of reach: the post's count so far."""
    with store.transaction() as conn:
        conn.execute("UPDATE posts SET unreachable_tries = unreachable_tries + 1 WHERE id = ?", (post_id,))
        return int(conn.execute("SELECT unreachable_tries FROM posts WHERE id = ?", (post_id,)).fetchone()[0])
