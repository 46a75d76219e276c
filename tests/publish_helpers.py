"""Shared by the publish/schedule/dispatch tests: routes files, posts and media put straight into the store."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from contentq.clock import iso
from contentq.content.html import html_to_text
from contentq.media import store_bytes
from contentq.runtime.context import Runtime
from tests.fake_telegram import FakeTelegram


def write_config(home: Path, text: str) -> Path:
    path = home / "contentq.toml"
    path.write_text(text, encoding="utf-8")
    return path


def route_toml(
    name: str = "news",
    *,
    target: str = "@mychan",
    schedule: str = "asap = true",
    extra: str = "",
    generate: str | None = None,
    sources: str = '["@donor"]',
) -> str:
    text = f'[routes.{name}]\ntarget = "{target}"\nsources = {sources}\nrewriter = "none"\n{extra}\n'
    text += f"[routes.{name}.schedule]\n{schedule}\n"
    if generate:
        text += f"[routes.{name}.generate]\n{generate}\n"
    return text


_msg_ids = itertools.count(1)


def add_post(
    rt: Runtime,
    html: str = "Hello <b>world</b>",
    *,
    route: str = "news",
    state: str = "rewritten",
    kind: str = "text",
    posted_at: str | None = None,
    **fields: Any,
) -> int:
    stamp = iso()
    row: dict[str, Any] = {
        "route": route,
        "source": "@donor",
        "source_msg_id": next(_msg_ids),
        "kind": kind,
        "text_html": html,
        "rewrite_html": html,
        "collected_at": stamp,
        "posted_at": posted_at,
        "state": state,
        "updated_at": stamp,
        **fields,
    }
    columns = ", ".join(row)
    with rt.store.transaction() as conn:
        cursor = conn.execute(
            f"INSERT INTO posts ({columns}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
        )
    return int(cursor.lastrowid or 0)


def add_media(
    rt: Runtime,
    post_id: int,
    kind: str = "photo",
    *,
    position: int = 0,
    origin: str = "donor",
    data: bytes | None = None,
) -> int:
    payload = data or f"{kind} {post_id} {position} {origin}".encode()
    ext = {"photo": ".jpg", "video": ".mp4"}.get(kind, ".bin")
    stored = store_bytes(rt.settings.media_dir, payload, ext=ext)
    with rt.store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO media (post_id, position, origin, kind, sha256, path, size, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (post_id, position, origin, kind, stored.sha256, stored.relpath, stored.size, iso()),
        )
    return int(cursor.lastrowid or 0)


def fake(rt: Runtime, **kw: Any) -> FakeTelegram:
    """A FakeTelegram as this runtime's gateway, with the target channel known."""
    tg = FakeTelegram(**kw)
    tg.add_channel("@mychan", 1234567, title="My channel")
    rt.services["telegram"] = tg
    return tg


def notifications(rt: Runtime, prefix: str = "") -> list[dict[str, Any]]:
    return rt.store.query("SELECT * FROM notifications WHERE key LIKE ? ORDER BY id", (prefix + "%",))


def joins_back(original: str, parts: list[str]) -> bool:
    """The parts' visible texts, in order, are the original's with only whitespace left out between them."""
    text = html_to_text(original)
    pos = 0
    for part in parts:
        piece = html_to_text(part)
        while pos < len(text) and text[pos].isspace() and not text.startswith(piece, pos):
            pos += 1
        if not text.startswith(piece, pos):
            return False
        pos += len(piece)
    return not text[pos:].strip()
