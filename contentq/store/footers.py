"""Learned donor footers (content/footer.py), one row per source, refreshed on collect and import."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from contentq.clock import iso
from contentq.content.footer import MIN_SAMPLE, WINDOW, Footer, learn
from contentq.store.db import Store


def load_footer(conn: sqlite3.Connection, source: str) -> Footer | None:
    row = conn.execute(
        "SELECT trailer, header, refs, lines, sample FROM source_footers WHERE source = ?", (source,)
    ).fetchone()
    if row is None:
        return None
    trailer, header, refs, lines, sample = row
    return Footer(frozenset(json.loads(trailer)), frozenset(json.loads(header)), frozenset(json.loads(refs)),
                  tuple(json.loads(lines)), int(sample))  # fmt: skip


def save_footer(conn: sqlite3.Connection, source: str, footer: Footer) -> None:
    conn.execute(
        "INSERT INTO source_footers (source, trailer, header, refs, lines, sample, learned_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET trailer = excluded.trailer,"
        " header = excluded.header, refs = excluded.refs, lines = excluded.lines, sample = excluded.sample,"
        " learned_at = excluded.learned_at",
        (source, json.dumps(sorted(footer.trailer), ensure_ascii=False),
         json.dumps(sorted(footer.header), ensure_ascii=False), json.dumps(sorted(footer.refs)),
         json.dumps(list(footer.lines), ensure_ascii=False), footer.sample, iso()),
    )  # fmt: skip


def recent_originals(conn: sqlite3.Connection, source: str, limit: int) -> list[str]:
    """The donor's newest stored posts as it posted them (footer included), newest first."""
    rows = conn.execute(
        "SELECT COALESCE(original_html, text_html) FROM posts WHERE source = ? AND text_html != ''"
        " ORDER BY COALESCE(posted_at, collected_at) DESC, id DESC LIMIT ?",
        (source, limit),
    )
    return [row[0] for row in rows]


def refresh_footer(conn: sqlite3.Connection, source: str, new_posts: list[str]) -> Footer | None:
    """Learn the donor's footer again from `new_posts` (newest first), topped up with its stored posts when
    they are too few, and keep it; with too small a sample the footer learned before stays."""
    sample = [html for html in new_posts if html.strip()][:WINDOW]
    if len(sample) < WINDOW:
        sample += recent_originals(conn, source, WINDOW - len(sample))
    footer = learn(sample)
    if footer.sample < MIN_SAMPLE:
        return load_footer(conn, source)
    save_footer(conn, source, footer)
    return footer


def learned_footers(store: Store) -> dict[str, dict[str, Any]]:
    """Per source: the footer lines learned (as they read), the sample they were learned from, and when."""
    rows = store.query("SELECT source, lines, sample, learned_at FROM source_footers")
    return {r["source"]: {**r, "lines": json.loads(r["lines"] or "[]")} for r in rows}
