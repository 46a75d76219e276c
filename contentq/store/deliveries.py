"""Deliveries (one per post and destination), their parts ledger, their history and the rate buckets: the SQL.

The moves themselves (which event goes from which state to which) are declared in `contentq.publish.deliveries`;
this module only writes what it is told, as a compare-and-set, with the change recorded in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from contentq.clock import iso
from contentq.errors import NotFoundError
from contentq.redact import redact
from contentq.store.db import Store


def get_delivery(store: Store, delivery_id: int) -> dict[str, Any]:
    row = store.one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    if row is None:
        raise NotFoundError(f"no delivery {delivery_id}; `contentq posts show POST_ID` lists a post's deliveries")
    return row


def deliveries_of(store: Store, post_id: int) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM deliveries WHERE post_id = ? ORDER BY id", (post_id,))


def deliveries_of_posts(store: Store, post_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    ids = [int(i) for i in post_ids]
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    marks = ", ".join("?" for _ in ids)
    for row in store.query(f"SELECT * FROM deliveries WHERE post_id IN ({marks}) ORDER BY id", ids):
        out[row["post_id"]].append(row)
    return out


def insert_delivery(
    store: Store,
    post_id: int,
    destination: str,
    platform: str,
    account: str,
    state: str,
    due_at: str,
    event: str,
    actor: str,
) -> dict[str, Any]:
    """The post's delivery to `destination`, created (with its first history row, by `actor`) unless it exists."""
    stamp = iso()
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO deliveries (post_id, destination, platform, account, state, due_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (post_id, destination) DO NOTHING",
            (post_id, destination, platform, account, state, due_at, stamp, stamp),
        )
        if cursor.rowcount == 1:
            conn.execute(
                "INSERT INTO delivery_changes (delivery_id, old_state, new_state, event, actor, at)"
                " VALUES (?, NULL, ?, ?, ?, ?)",
                (cursor.lastrowid, state, event, actor, stamp),
            )
    row = store.one("SELECT * FROM deliveries WHERE post_id = ? AND destination = ?", (post_id, destination))
    assert row is not None
    return row


def change_delivery_state(
    conn: sqlite3.Connection,
    delivery_id: int,
    sources: tuple[str, ...],
    target: str,
    fields: dict[str, Any],
    *,
    event: str,
    actor: str,
    reason: str | None,
) -> str | None:
    """Move the delivery from one of `sources` to `target` (setting `fields` and the reason) inside the caller's
    transaction; the old state when it moved, None when it was elsewhere."""
    found = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if found is None or found[0] not in sources:
        return None
    stamp = iso()
    values = {**fields, "state": target, "state_reason": None if reason is None else redact(reason)[:500]}
    values["updated_at"] = stamp
    assignments = ", ".join(f"{column} = ?" for column in values)
    conn.execute(f"UPDATE deliveries SET {assignments} WHERE id = ?", [*values.values(), delivery_id])
    conn.execute(
        "INSERT INTO delivery_changes (delivery_id, old_state, new_state, event, actor, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (delivery_id, found[0], target, event, actor, values["state_reason"], stamp),
    )
    return str(found[0])


def delivery_history(store: Store, delivery_id: int) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM delivery_changes WHERE delivery_id = ? ORDER BY id", (delivery_id,))


def set_delivery_fields(store: Store, delivery_id: int, **fields: Any) -> None:
    """Columns that are no state (the unreachable count, notes): the state's own columns move with a move."""
    assert "state" not in fields and "state_reason" not in fields
    values = {**fields, "updated_at": iso()}
    assignments = ", ".join(f"{column} = ?" for column in values)
    store.execute(f"UPDATE deliveries SET {assignments} WHERE id = ?", [*values.values(), delivery_id])


def count_unreachable(store: Store, delivery_id: int) -> int:
    with store.transaction() as conn:
        conn.execute("UPDATE deliveries SET unreachable_tries = unreachable_tries + 1 WHERE id = ?", (delivery_id,))
        row = conn.execute("SELECT unreachable_tries FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return int(row[0])


def next_round(store: Store, delivery_id: int, round_no: int) -> None:
    """What this round sent was taken back: the next run starts a new round (fresh parts, fresh random ids)."""
    store.execute("UPDATE deliveries SET round = ? WHERE id = ? AND round = ?", (round_no + 1, delivery_id, round_no))


# The parts ledger: each request that makes something visible is recorded before it leaves -----------------


def part_row(store: Store, delivery_id: int, round_no: int, part: int) -> dict[str, Any] | None:
    return store.one(
        "SELECT * FROM delivery_parts WHERE delivery_id = ? AND round = ? AND part = ?", (delivery_id, round_no, part)
    )


def parts_of(store: Store, delivery_id: int, round_no: int | None = None) -> list[dict[str, Any]]:
    if round_no is None:
        return store.query("SELECT * FROM delivery_parts WHERE delivery_id = ? ORDER BY round, part", (delivery_id,))
    return store.query(
        "SELECT * FROM delivery_parts WHERE delivery_id = ? AND round = ? ORDER BY part", (delivery_id, round_no)
    )


def record_part_attempt(
    store: Store, delivery_id: int, round_no: int, part: int, detail: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Committed before the request leaves; a retry keeps the first attempt's time (the recent posts of the
    account are looked at from then on). Returns the row."""
    stamp = iso()
    store.execute(
        "INSERT INTO delivery_parts (delivery_id, round, part, status, detail, attempted_at, updated_at)"
        " VALUES (?, ?, ?, 'attempting', ?, ?, ?) ON CONFLICT (delivery_id, round, part) DO UPDATE SET"
        " status = 'attempting', error = NULL, detail = COALESCE(excluded.detail, detail),"
        " updated_at = excluded.updated_at",
        (delivery_id, round_no, part, json.dumps(detail) if detail is not None else None, stamp, stamp),
    )
    row = part_row(store, delivery_id, round_no, part)
    assert row is not None
    return row


def record_part_detail(store: Store, delivery_id: int, round_no: int, part: int, detail: dict[str, Any]) -> None:
    store.execute(
        "UPDATE delivery_parts SET detail = ?, updated_at = ? WHERE delivery_id = ? AND round = ? AND part = ?",
        (json.dumps(detail), iso(), delivery_id, round_no, part),
    )


def record_part_sent(store: Store, delivery_id: int, round_no: int, part: int, platform_id: str) -> None:
    store.execute(
        "UPDATE delivery_parts SET status = 'sent', platform_id = ?, error = NULL, updated_at = ?"
        " WHERE delivery_id = ? AND round = ? AND part = ?",
        (platform_id, iso(), delivery_id, round_no, part),
    )


def record_part_refused(store: Store, delivery_id: int, round_no: int, part: int, error: str) -> None:
    """Refused before anything became visible (a 4xx, a rate limit): not uncertain."""
    store.execute(
        "UPDATE delivery_parts SET status = 'failed', error = ?, updated_at = ?"
        " WHERE delivery_id = ? AND round = ? AND part = ?",
        (redact(error)[:500], iso(), delivery_id, round_no, part),
    )


def recorded_platform_ids(store: Store, platform: str, account: str) -> set[str]:
    """Ids of everything recorded as sent to this account (any post): never taken for another part's."""
    rows = store.query(
        "SELECT p.platform_id FROM delivery_parts p JOIN deliveries d ON d.id = p.delivery_id"
        " WHERE d.platform = ? AND d.account = ? AND p.status = 'sent' AND p.platform_id IS NOT NULL",
        (platform, account),
    )
    return {str(r["platform_id"]) for r in rows}


def published_times(store: Store, platform: str, account: str, since: str) -> list[str]:
    """When this account's deliveries were published, from `since` on, oldest first."""
    rows = store.query(
        "SELECT published_at FROM deliveries WHERE platform = ? AND account = ? AND state = 'published'"
        " AND published_at >= ? ORDER BY published_at",
        (platform, account, since),
    )
    return [str(r["published_at"]) for r in rows]


def active_deliver_job(store: Store, delivery_id: int) -> dict[str, Any] | None:
    return store.one(
        "SELECT * FROM jobs WHERE kind = 'deliver' AND json_extract(payload, '$.delivery_id') = ?"
        " AND status IN ('queued', 'in_progress') ORDER BY rowid DESC LIMIT 1",
        (delivery_id,),
    )


def stranded_deliveries(store: Store) -> list[dict[str, Any]]:
    """Deliveries left `publishing` by a deliver job that ended (failed, cancelled) without settling them: its
    process died between recording the job's end and running its end-of-life hook."""
    return store.query(
        "SELECT j.*, d.id AS delivery_id FROM deliveries d JOIN jobs j ON j.kind = 'deliver'"
        " AND j.rowid = (SELECT MAX(rowid) FROM jobs WHERE kind = 'deliver'"
        " AND json_extract(payload, '$.delivery_id') = d.id)"
        " WHERE d.state = 'publishing' AND j.status IN ('failed', 'cancelled') AND j.finished_at >= d.updated_at"
    )


# Token buckets per destination account -----------------------------------------------------------------


def take_token(
    store: Store, key: str, burst: int, per_second: float, now_s: float | None = None, count: int = 1
) -> float:
    """Take `count` sends (at most `burst`) from the account's bucket: 0 when granted, else the seconds until
    that many tokens are there.

    Kept in SQLite, not Redis: a Redis flush must not hand out a fresh burst the platform would refuse."""
    current = time.time() if now_s is None else now_s
    with store.transaction() as conn:
        row = conn.execute("SELECT tokens, updated_at FROM rate_buckets WHERE key = ?", (key,)).fetchone()
        tokens = float(burst) if row is None else min(float(burst), row[0] + max(0.0, current - row[1]) * per_second)
        need = float(max(1, min(count, burst)))
        if tokens >= need:
            tokens -= need
            wait = 0.0
        else:
            wait = (need - tokens) / per_second
        conn.execute(
            "INSERT INTO rate_buckets (key, tokens, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " tokens = excluded.tokens, updated_at = excluded.updated_at",
            (key, tokens, current),
        )
    return wait


def bucket_level(store: Store, key: str) -> tuple[float, float] | None:
    """(tokens, unix time of the last refill) of an account's bucket; None when it was never used."""
    row = store.one("SELECT tokens, updated_at FROM rate_buckets WHERE key = ?", (key,))
    return None if row is None else (float(row["tokens"]), float(row["updated_at"]))


def waiting_deliveries(store: Store, platform: str, account: str) -> tuple[int, str | None]:
    """Deliveries to this account not sent yet: how many, and the earliest slot among them."""
    row = store.one(
        "SELECT COUNT(*) AS n, MIN(due_at) AS due FROM deliveries WHERE platform = ? AND account = ?"
        " AND state = 'scheduled'",
        (platform, account),
    )
    return (int(row["n"]), row["due"]) if row else (0, None)
