"""SQL of insights (docs/insights.md): the items measured, their samples over time, subscriber counts.

An item is one published post on one destination; its row holds the rollup the reports read (the latest figures
and the figures at 24 h, set once the samples bracket that age), so a report reads one row per post and never the
samples. A sample belongs to the fetch round that took it (`UNIQUE (item_id, round)`): a round that is
rescheduled part-way (a flood wait) and runs again skips what it sampled already.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from contentq.store import Store

METRICS = ("views", "forwards", "replies", "reactions")
"""The figures of a sample; reactions is the sum over emoji (reactions_json has them one by one)."""

HOURLY_FOR_S = 2 * 86400
"""Samples younger than this (since the post's publication) are thinned to one an hour, older ones to one a day."""


def sync_items(store: Store, since: str) -> int:
    """Add an item for each post published (to Telegram, without deliveries) or delivery published since `since`
    that has none yet; returns how many were added. The post's LLM cost is copied in once."""
    # The LLM cost of the new items' posts, summed once (usage has no index by post: one pass over it).
    cost = "COALESCE(c.cost, 0)"
    costs = (
        "WITH costs AS MATERIALIZED (SELECT post_id, SUM(cost) AS cost FROM usage WHERE post_id IN"
        " (SELECT id FROM posts WHERE published_at >= :since) GROUP BY post_id)"
    )
    with store.transaction() as conn:
        before = conn.total_changes  # a statement that starts with WITH has no rowcount
        conn.execute(
            f"""
            {costs}
            INSERT OR IGNORE INTO insight_items (post_id, destination, platform, account, platform_id, route,
                source, rewriter, published_at, link, llm_cost)
            SELECT p.id, 'telegram:' || p.target, 'telegram', p.target,
                CAST(json_extract(p.message_ids, '$[0]') AS TEXT), p.route, p.source, p.rewriter, p.published_at,
                p.link, {cost}
            FROM posts AS p LEFT JOIN costs AS c ON c.post_id = p.id
            WHERE p.state = 'published' AND p.published_at >= :since AND p.target IS NOT NULL AND p.target != ''
              AND json_valid(p.message_ids) AND json_extract(p.message_ids, '$[0]') IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.post_id = p.id)
              AND NOT EXISTS (SELECT 1 FROM insight_items AS i WHERE i.post_id = p.id
                              AND i.destination = 'telegram:' || p.target)
            """,
            {"since": since},
        )
        conn.execute(
            f"""
            {costs}
            INSERT OR IGNORE INTO insight_items (post_id, destination, platform, account, platform_id, route,
                source, rewriter, published_at, link, llm_cost)
            SELECT p.id, d.destination, d.platform, d.account, CAST(json_extract(d.platform_ids, '$[0]') AS TEXT),
                p.route, p.source, p.rewriter, d.published_at, d.link, {cost}
            FROM deliveries AS d JOIN posts AS p ON p.id = d.post_id LEFT JOIN costs AS c ON c.post_id = p.id
            WHERE d.state = 'published' AND d.published_at >= :since
              AND json_valid(d.platform_ids) AND json_extract(d.platform_ids, '$[0]') IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM insight_items AS i WHERE i.post_id = p.id
                              AND i.destination = d.destination)
            """,
            {"since": since},
        )
        return conn.total_changes - before


def items_to_fetch(store: Store, since: str, round_: str) -> list[dict[str, Any]]:
    """Items published since `since`, still on their platform, without a sample of this round; by destination
    and platform id."""
    return store.query(
        "SELECT id, destination, platform, account, route, platform_id, published_at, views_24h IS NULL AS open_24h"
        " FROM insight_items AS i"
        " WHERE published_at >= ? AND gone = 0"
        " AND NOT EXISTS (SELECT 1 FROM insight_samples AS s WHERE s.item_id = i.id AND s.round = ?)"
        " ORDER BY destination, CAST(platform_id AS INTEGER), platform_id",
        (since, round_),
    )


def insert_sample(conn: sqlite3.Connection, item_id: int, round_: str, at: str, age_s: int,
                  values: dict[str, Any]) -> bool:  # fmt: skip
    """One sample; False when this round has one for the item already (nothing is written twice)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO insight_samples (item_id, round, at, age_s, views, forwards, replies, reactions,"
        " reactions_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (item_id, round_, at, age_s, values.get("views"), values.get("forwards"), values.get("replies"),
         values.get("reactions"), values.get("reactions_json")),
    )  # fmt: skip
    return cursor.rowcount == 1


def sample_before(conn: sqlite3.Connection, item_id: int, age_s: int) -> dict[str, Any] | None:
    """The item's latest sample younger than `age_s` seconds (since publication)."""
    row = conn.execute(
        "SELECT age_s, views, forwards, replies, reactions FROM insight_samples"
        " WHERE item_id = ? AND age_s < ? ORDER BY age_s DESC LIMIT 1",
        (item_id, age_s),
    ).fetchone()
    return dict(zip(("age_s", *METRICS), row, strict=True)) if row else None


def update_item(conn: sqlite3.Connection, item_id: int, at: str, values: dict[str, Any],
                at_24h: dict[str, float | None] | None) -> None:  # fmt: skip
    """The item's latest figures (a sample older than the latest does not replace them), and its figures at 24 h
    when they are now known."""
    conn.execute(
        "UPDATE insight_items SET samples = samples + 1,"
        " views = CASE WHEN sampled_at IS NULL OR sampled_at <= :at THEN :views ELSE views END,"
        " forwards = CASE WHEN sampled_at IS NULL OR sampled_at <= :at THEN :forwards ELSE forwards END,"
        " replies = CASE WHEN sampled_at IS NULL OR sampled_at <= :at THEN :replies ELSE replies END,"
        " reactions = CASE WHEN sampled_at IS NULL OR sampled_at <= :at THEN :reactions ELSE reactions END,"
        " reactions_json = CASE WHEN sampled_at IS NULL OR sampled_at <= :at THEN :reactions_json"
        " ELSE reactions_json END,"
        " sampled_at = MAX(COALESCE(sampled_at, ''), :at) WHERE id = :id",
        {"id": item_id, "at": at, **{k: values.get(k) for k in (*METRICS, "reactions_json")}},
    )
    if at_24h is not None:
        conn.execute(
            "UPDATE insight_items SET views_24h = :views, forwards_24h = :forwards, replies_24h = :replies,"
            " reactions_24h = :reactions WHERE id = :id AND views_24h IS NULL",
            {"id": item_id, **at_24h},
        )


def mark_gone(conn: sqlite3.Connection, item_ids: list[int]) -> None:
    """Deleted on their platform: kept in the reports, no longer fetched."""
    conn.executemany("UPDATE insight_items SET gone = 1 WHERE id = ?", [(i,) for i in item_ids])


def channel_sampled(store: Store, destination: str, round_: str) -> bool:
    return bool(
        store.scalar("SELECT 1 FROM channel_samples WHERE destination = ? AND round = ?", (destination, round_))
    )


def record_subscribers(store: Store, destination: str, round_: str, at: str, subscribers: int) -> bool:
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO channel_samples (destination, round, at, subscribers) VALUES (?, ?, ?, ?)",
            (destination, round_, at, subscribers),
        )
    return cursor.rowcount == 1


# -- reading -------------------------------------------------------------------------------------------


ROLLUP_COLUMNS = ("id", "post_id", "route", "destination", "source", "rewriter", "published_at", "views_24h",
                  "forwards_24h", "reactions_24h", "link", "llm_cost")  # fmt: skip
"""What a report reads of an item: all of it fixed once the figures at 24 h are set (contentq/insights/rollup.py)."""

_ROLLUP = f"SELECT {', '.join(ROLLUP_COLUMNS)} FROM insight_items"


def rollup_since(conn: sqlite3.Connection, since: str) -> list[tuple[Any, ...]]:
    """Every item published since `since`, as tuples of ROLLUP_COLUMNS, by publication (then id)."""
    return conn.execute(f"{_ROLLUP} WHERE published_at >= ? ORDER BY published_at, id", (since,)).fetchall()


def rollup_added(conn: sqlite3.Connection, after_id: int) -> list[tuple[Any, ...]]:
    """The items added since the one numbered `after_id` (ids grow; a deletion is counted by `deletions`)."""
    return conn.execute(f"{_ROLLUP} WHERE id > ? ORDER BY id", (after_id,)).fetchall()


def rollup_settled(conn: sqlite3.Connection, item_ids: list[int]) -> list[tuple[Any, ...]]:
    """Of these items, those whose figures at 24 h are now set: (id, views_24h, forwards_24h, reactions_24h)."""
    return conn.execute(
        "SELECT id, views_24h, forwards_24h, reactions_24h FROM insight_items"
        " WHERE id IN (SELECT value FROM json_each(?)) AND views_24h IS NOT NULL",
        (json.dumps(item_ids),),
    ).fetchall()


def deletions(conn: sqlite3.Connection) -> int:
    """How many items were ever deleted (a trigger counts them, migration 220)."""
    row = conn.execute("SELECT deleted FROM insight_deletions WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def data_stamp(store: Store) -> tuple[Any, ...]:
    """Changes whenever a report could: a sample (and so figures at 24 h) or subscriber count stored, an item added
    or deleted. Each part is one index lookup, as every panel request asks (an item marked gone is not read)."""
    with store.transaction(immediate=False) as conn:
        return tuple(
            conn.execute(
                "SELECT (SELECT MAX(id) FROM insight_samples), (SELECT MAX(id) FROM channel_samples),"
                " (SELECT MAX(id) FROM insight_items), (SELECT deleted FROM insight_deletions WHERE id = 1)"
            ).fetchone()
        )


def subscriber_series(store: Store, since: str) -> list[dict[str, Any]]:
    return store.query(
        "SELECT destination, at, subscribers FROM channel_samples WHERE at >= ? ORDER BY destination, at", (since,)
    )


def sample_series(store: Store, item_id: int) -> list[dict[str, Any]]:
    return store.query(
        "SELECT round, at, age_s, views, forwards, replies, reactions, reactions_json FROM insight_samples"
        " WHERE item_id = ? ORDER BY age_s",
        (item_id,),
    )


# -- thinning (purge) ----------------------------------------------------------------------------------

_BUCKET = f"CASE WHEN age_s < {HOURLY_FOR_S} THEN age_s / 3600 ELSE 100000 + age_s / 86400 END"


def thin_samples(store: Store, *, dry_run: bool, batch_items: int = 500) -> int:
    """Keep the first sample of each hour of an item's first two days and of each day after; returns how many
    went (or would go). Works through the items in batches: each transaction is short."""
    removed = 0
    last = 0
    while True:
        ids = [r["id"] for r in store.query(
            "SELECT id FROM insight_items WHERE id > ? ORDER BY id LIMIT ?", (last, batch_items))]  # fmt: skip
        if not ids:
            return removed
        last = ids[-1]
        marks = ",".join("?" for _ in ids)
        doomed = (
            f"FROM insight_samples WHERE item_id IN ({marks}) AND id NOT IN (SELECT MIN(id) FROM insight_samples"
            f" WHERE item_id IN ({marks}) GROUP BY item_id, {_BUCKET})"
        )
        if dry_run:
            removed += int(store.scalar(f"SELECT COUNT(*) {doomed}", [*ids, *ids]) or 0)
            continue
        with store.transaction() as conn:
            removed += conn.execute(f"DELETE {doomed}", [*ids, *ids]).rowcount


def thin_channel_samples(store: Store, hourly_since: str, *, dry_run: bool) -> int:
    """Subscriber counts: the first of each hour since `hourly_since`, the first of each day before it."""
    bucket = "CASE WHEN at >= :since THEN substr(at, 1, 13) ELSE substr(at, 1, 10) END"
    doomed = (
        f"FROM channel_samples WHERE id NOT IN (SELECT MIN(id) FROM channel_samples GROUP BY destination, {bucket})"
    )
    if dry_run:
        return int(store.scalar(f"SELECT COUNT(*) {doomed}", {"since": hourly_since}) or 0)
    with store.transaction() as conn:
        return conn.execute(f"DELETE {doomed}", {"since": hourly_since}).rowcount


def telegram_destinations(store: Store, since: str) -> list[tuple[str, str]]:
    """The Telegram destinations with posts published since `since`, each with one route that posts there."""
    rows = store.query(
        "SELECT destination, MIN(route) AS route FROM insight_items WHERE platform = 'telegram' AND published_at >= ?"
        " GROUP BY destination ORDER BY destination",
        (since,),
    )
    return [(str(r["destination"]), str(r["route"])) for r in rows]
