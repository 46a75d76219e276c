"""Post actions of the panel: each calls the core function its CLI command calls (contentq.posts,
contentq.publish.core); this module only adapts form and API input and the results' shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contentq import posts
from contentq.clock import parse
from contentq.publish.core import publish_now
from contentq.runtime.context import Runtime


def approve(rt: Runtime, post_id: int) -> datetime:
    return parse(posts.approve(rt, post_id)["scheduled_at"])


def reject(rt: Runtime, post_id: int, reason: str | None) -> dict[str, Any]:
    return posts.reject(rt, post_id, reason or None)


def unschedule(rt: Runtime, post_id: int) -> dict[str, Any]:
    return posts.unschedule(rt, post_id)


def schedule_at(rt: Runtime, post_id: int, at: str) -> tuple[datetime, str | None]:
    result = posts.schedule_at(rt, post_id, at)
    return parse(result["scheduled_at"]), result["note"]


def edit_post(rt: Runtime, post_id: int, edited: str) -> str:
    """Save a new text with the checks of `posts edit`; returns what the CLI prints after the save."""
    posts.text_to_edit(rt, post_id)  # refuses a post that may no longer be edited
    edited = edited.replace("\r\n", "\n").rstrip("\n")  # a browser's textarea sends CRLF
    saved = posts.save_text(rt, post_id, edited)
    return f"post {post_id} saved, {saved['length']} characters{saved['note']}"


def publish_post_now(rt: Runtime, post_id: int) -> str:
    """`contentq publish ID` (through the publish queue): skip the slot and approval; returns the job id."""
    return str(publish_now(rt, post_id)["job"] or "?")
