"""Channels in SQLite: resolved ids cached once (ResolveUsername is flood-limited), cursors and counters."""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from contentq.clock import iso
from contentq.content.refs import normalize_channel_ref
from contentq.integrations.telegram.gateway import ResolvedChannel, TelegramGateway
from contentq.routes import load_routes
from contentq.runtime.context import Runtime
from contentq.store import Store


class Counts(Protocol):
    """The counters a run adds to its channel (intake.ingest.Counts; a Protocol so flow/ never imports intake/)."""

    @property
    def collected(self) -> int: ...
    @property
    def duplicate(self) -> int: ...
    @property
    def filtered(self) -> int: ...


def get_channel(store: Store, ref: str) -> dict[str, Any] | None:
    return store.one("SELECT * FROM channels WHERE ref = ?", (normalize_channel_ref(ref),))


def ensure_channel(conn: sqlite3.Connection, ref: str, role: str = "source") -> None:
    conn.execute("INSERT OR IGNORE INTO channels (ref, role, updated_at) VALUES (?, ?, ?)", (ref, role, iso()))


def cached_channel(store: Store, ref: str) -> ResolvedChannel | None:
    """The resolved channel from the cache, or None when it was never resolved."""
    row = get_channel(store, ref)
    if row is None or row["tg_id"] is None:
        return None
    return _from_row(row)


def _from_row(row: dict[str, Any]) -> ResolvedChannel:
    ref = row["ref"]
    return ResolvedChannel(
        ref=ref,
        id=row["tg_id"],
        access_hash=row["access_hash"],
        title=row["title"] or "",
        username=ref[1:] if ref.startswith("@") else None,
    )


def resolve_channel(
    store: Store, gateway: TelegramGateway, ref: str, *, role: str = "source", refresh: bool = False
) -> ResolvedChannel:
    """The channel's id and access hash: from the cache, or resolved once through Telegram and cached."""
    ref = normalize_channel_ref(ref)
    if not refresh and (cached := cached_channel(store, ref)) is not None:
        return cached
    channel = gateway.resolve(ref)
    stamp = iso()
    with store.transaction() as conn:
        ensure_channel(conn, ref, role)
        conn.execute(
            "UPDATE channels SET tg_id = ?, access_hash = ?, title = ?, resolved_at = ?, updated_at = ? WHERE ref = ?",
            (channel.id, channel.access_hash, channel.title, stamp, stamp, ref),
        )
    return ResolvedChannel(ref, channel.id, channel.access_hash, channel.title, channel.username)


def advance(conn: sqlite3.Connection, ref: str, last_message_id: int, counts: Counts) -> None:
    """Move the cursor forward (never back) and add to the counters, in the caller's transaction."""
    conn.execute(
        "UPDATE channels SET last_message_id = MAX(last_message_id, ?), collected_count = collected_count + ?,"
        " duplicate_count = duplicate_count + ?, filtered_count = filtered_count + ?, updated_at = ? WHERE ref = ?",
        (last_message_id, counts.collected, counts.duplicate, counts.filtered, iso(), ref),
    )


def mark_run(store: Store, ref: str, error: str | None = None) -> None:
    """Record the end of a collect run: its time on success, the error otherwise."""
    stamp = iso()
    with store.transaction() as conn:
        ensure_channel(conn, ref)
        if error is None:
            conn.execute(
                "UPDATE channels SET last_collected_at = ?, last_error = NULL, updated_at = ? WHERE ref = ?",
                (stamp, stamp, ref),
            )
        else:
            conn.execute("UPDATE channels SET last_error = ?, updated_at = ? WHERE ref = ?", (error, stamp, ref))


def list_sources(runtime: Runtime) -> list[dict[str, Any]]:
    """Every donor channel of contentq.toml (and any other channel collected from), with its state."""
    routes = load_routes(runtime.settings.config_path)
    rows = {r["ref"]: r for r in runtime.store.query("SELECT * FROM channels WHERE role = 'source' ORDER BY ref")}
    out: list[dict[str, Any]] = []
    listed: set[str] = set()
    for ref, route in routes.sources():
        if ref in listed:
            continue
        listed.add(ref)
        out.append(_source_row(ref, route.name, rows.get(ref)))
    for ref, row in rows.items():
        if ref not in listed:
            out.append(_source_row(ref, None, row))
    return out


def _source_row(ref: str, route: str | None, row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    return {
        "source": ref,
        "route": route,
        "id": row.get("tg_id"),
        "title": row.get("title"),
        "last_message_id": row.get("last_message_id", 0),
        "last_run": row.get("last_collected_at"),
        "collected": row.get("collected_count", 0),
        "duplicates": row.get("duplicate_count", 0),
        "filtered": row.get("filtered_count", 0),
        "resolved_at": row.get("resolved_at"),
        "error": row.get("last_error"),
    }
