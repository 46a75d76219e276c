"""Shared by the rewrite tests: a routes file, posts inserted straight into the store, a pipeline spy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contentq.clock import iso
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.settings import load_settings

ROUTES = """
[routes.news]
target = "@my_channel"
sources = ["@donor"]
rewriter = "{rewriter}"
prompt = "Rewrite for a tech audience, friendly tone."
description = "Daily technology news, short and to the point."
style_examples = 2
allowed_links = ["https://my-site.example"]
images = "{images}"
image_backend = "{image_backend}"
long_text = "{long_text}"

[routes.news.clean]
replacements = {{ "Subscribe to @donor" = "", "Breaking" = "News" }}
signature = "<b>My Channel</b> — @my_channel"
footer_share = 0.5
footer_window = 10
"""


def write_routes(
    home: Path, *, rewriter: str = "llm", images: str = "none", image_backend: str = "card", long_text: str = "split"
) -> Path:
    path = home / "contentq.toml"
    text = ROUTES.format(rewriter=rewriter, images=images, image_backend=image_backend, long_text=long_text)
    path.write_text(text, encoding="utf-8")
    return path


_msg_ids = iter(range(1000, 10**9))


def add_post(
    rt: Runtime,
    html: str,
    *,
    route: str = "news",
    source: str = "@donor",
    state: str = "collected",
    kind: str = "text",
    posted_at: str | None = None,
    **fields: Any,
) -> int:
    stamp = iso()
    row = {
        "route": route,
        "source": source,
        "source_msg_id": next(_msg_ids),
        "kind": kind,
        "text_html": html,
        "collected_at": stamp,
        "posted_at": posted_at or stamp,
        "state": state,
        "updated_at": stamp,
        **fields,
    }
    cursor = rt.store.execute(
        f"INSERT INTO posts ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def add_media(rt: Runtime, post_id: int, kind: str = "photo") -> None:
    rt.store.execute(
        "INSERT INTO media (post_id, origin, kind, created_at) VALUES (?, 'donor', ?, ?)", (post_id, kind, iso())
    )


def answer(text: str, *, title: str | None = None, image_prompt: str | None = None, skip: bool = False,
           skip_reason: str | None = None) -> str:  # fmt: skip
    """A model answer following the output schema."""
    return json.dumps(
        {"text": text, "title": title, "image_prompt": image_prompt, "skip": skip, "skip_reason": skip_reason},
        ensure_ascii=False,
    )


def post(rt: Runtime, post_id: int) -> dict[str, Any]:
    row = rt.store.one("SELECT * FROM posts WHERE id = ?", (post_id,))
    assert row is not None
    return row


def notifications(rt: Runtime) -> list[str]:
    return [r["message"] for r in rt.store.query("SELECT message FROM notifications ORDER BY id")]


def events(rt: Runtime, job_id: str) -> list[dict[str, Any]]:
    return rt.store.query("SELECT * FROM job_events WHERE job_id = ? ORDER BY id", (job_id,))


API_KEY = "sk-test-secret-0123456789abcdef"


def make_rt(home, llmock, **overrides) -> Runtime:  # type: ignore[no-untyped-def]
    settings = load_settings(
        home=home,
        openai_base_url=llmock.base_url("openai"),
        openai_api_key=API_KEY,
        rewrite_backoff_base=1.0,
        worker_maintenance_interval=1,
        **overrides,
    )
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    return runtime


def rewrite_job(rt: Runtime, post_id: int) -> str:
    return str(enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)["id"])
