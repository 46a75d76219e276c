"""Donor edits and deletions, as `contentq listen` sees them, applied to the posts they came from.

Edits (route `on_donor_edit`): a post not yet published takes the donor's new text (footer stripped as at
collect); if its rewrite is done or under way it goes back to `collected` and is rewritten again. A
published post is left as it is, unless `edit_published`: then one `donor_change` job rewrites the new text
once and edits our message(s) (recorded in `post_edits`, so a retry edits with the same text and a second
delivery of the same donor edit does nothing), within Telegram's 48 h edit window.

Deletions (route `on_donor_delete`): once every message of a post is deleted by the donor, a post not yet
published is cancelled with the reason; a published one is left alone unless `delete_published`, which
deletes our messages through a `donor_change` job.

Every decision on a post is taken inside one write transaction, so it serializes with the rewrite and
publish jobs' compare-and-set state changes: whichever comes second sees the other's result.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telethon import errors as tg_errors

from contentq import lifecycle
from contentq.clock import iso, now, parse
from contentq.errors import Reschedule
from contentq.flow import pipeline
from contentq.intake.collect import CollectContext, _candidate
from contentq.intake.ingest import CandidateMedia, Ingestor
from contentq.integrations.telegram.access import gateway_of
from contentq.integrations.telegram.gateway import FetchedMessage
from contentq.runtime.context import JobContext
from contentq.store.posts import get_post

NOT_PUBLISHED = lifecycle.sources_of("donor_deleted")
"""States a post leaves for `cancelled` when the donor deletes it."""

REWRITE_AGAIN = lifecycle.sources_of("donor_edited")
"""States a donor edit sends back to `collected` for a new rewrite (a running rewrite finds it gone and
runs again: jobs/rewrite.py)."""

EDIT_WINDOW = timedelta(hours=48)
"""Telegram lets a message be edited this long after it was sent."""


@dataclass(frozen=True)
class Change:
    """What a donor edit or deletion did to one post (post_id None: no stored post has that message)."""

    post_id: int | None
    action: str  # updated | rewrite | edit_published | unchanged | ignored | left | not_stored
    #              cancelled | delete_published | partial
    detail: str = ""


def _posts_of(conn: sqlite3.Connection, source: str, msg_ids: list[int]) -> list[dict[str, Any]]:
    """The posts holding any of these donor messages, oldest first (late album items are later duplicates)."""
    marks = ",".join("?" for _ in msg_ids)
    cursor = conn.execute(
        "SELECT id, state, text_html, original_html, source_msg_ids, donor_deleted_ids FROM posts"
        f" WHERE source = ? AND (source_msg_id IN ({marks}) OR EXISTS (SELECT 1 FROM json_each(posts.source_msg_ids)"
        f" WHERE json_each.value IN ({marks}))) ORDER BY id",
        [source, *msg_ids, *msg_ids],
    )
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def edit_key(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()[:24]


def apply_edit(ctx: CollectContext, ingestor: Ingestor, source: str, message: FetchedMessage) -> Change:
    """A donor edited `message` (of `source`): see the module doc."""
    route = ingestor.route
    store = ctx.runtime.store
    candidate = _candidate(source, [message])
    if message.media is not None:
        candidate.media = [CandidateMedia(message.media.kind)]
    html, removed = ingestor.body(candidate)
    stamp = iso()
    enqueue: tuple[str, str, dict[str, Any], int] | None = None
    rewrite_again = False
    with store.transaction() as conn:
        rows = _posts_of(conn, source, [message.id])
        if not rows:
            return Change(None, "not_stored", f"{source} message {message.id} was never stored")
        row = rows[0]
        post_id, state = int(row["id"]), str(row["state"])
        if not html.strip():  # an album item without the caption, or a caption removed: the text stays
            return Change(post_id, "unchanged", "no text in the edited message")
        if html == row["text_html"]:  # reactions and other edits that leave the text alone
            return Change(post_id, "unchanged")
        if route.on_donor_edit == "ignore":
            return Change(post_id, "ignored", "on_donor_edit = ignore")
        text = {"text_html": html, "original_html": candidate.html if removed else None, "donor_edited_at": stamp,
                "updated_at": stamp}  # fmt: skip
        if state in REWRITE_AGAIN:
            text |= {"rewrite_html": None, "title": None, "image_prompt": None, "scheduled_at": None,
                     "dispatched_at": None}  # fmt: skip
            action = "rewrite"
            rewrite_again = True
        elif state in ("collected", "duplicate", "filtered", "failed"):
            action = "updated"
        elif state in ("publishing", "published") and route.on_donor_edit == "edit_published":
            text = {"donor_edited_at": stamp, "updated_at": stamp}  # the published text stays the record
            cursor = conn.execute(
                "INSERT INTO post_edits (post_id, edit_key, source_html, status, created_at, updated_at)"
                " VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT (post_id, edit_key) DO NOTHING",
                (post_id, edit_key(html), html, stamp, stamp),
            )
            if not cursor.rowcount:
                return Change(post_id, "unchanged", "this edit was applied before")
            edit_id = int(cursor.lastrowid or 0)
            action = "edit_published"
            enqueue = ("donor_change", f"edit:{post_id}:{edit_id}", {"post_id": post_id, "edit_id": edit_id}, post_id)
        else:
            return Change(post_id, "left", f"the post is {state}")
        assignments = ", ".join(f"{column} = ?" for column in text)
        conn.execute(f"UPDATE posts SET {assignments} WHERE id = ?", [*text.values(), post_id])
        if rewrite_again:
            lifecycle.move_in(conn, post_id, "donor_edited", then=True,
                              reason=f"the donor edited it (was {state}): rewritten again")  # fmt: skip
    if rewrite_again:
        pipeline.follow_up(ctx.runtime, post_id, "donor_edited")  # the rewrite job, after the commit
    if enqueue is not None:
        kind, key, payload, pid = enqueue
        ctx.enqueue_child(kind, key, payload, post_id=pid)
    return Change(post_id, action)


def apply_delete(ctx: CollectContext, route_delete: str, source: str, msg_ids: list[int]) -> list[Change]:
    """The donor deleted these messages of `source` (route setting `on_donor_delete`): see the module doc."""
    store = ctx.runtime.store
    changes: list[Change] = []
    jobs: list[int] = []
    with store.transaction() as conn:
        for row in _posts_of(conn, source, msg_ids):
            post_id, state = int(row["id"]), str(row["state"])
            own = set(json.loads(row["source_msg_ids"] or "[]"))
            gone = set(json.loads(row["donor_deleted_ids"] or "[]")) | (own & set(msg_ids))
            conn.execute("UPDATE posts SET donor_deleted_ids = ? WHERE id = ?", (json.dumps(sorted(gone)), post_id))
            if not own.issubset(gone):
                changes.append(Change(post_id, "partial", f"{len(gone)} of its {len(own)} messages deleted"))
                continue
            reason = f"deleted by the donor ({source} message {', '.join(str(i) for i in sorted(own))})"
            if state in NOT_PUBLISHED:
                lifecycle.move_in(conn, post_id, "donor_deleted", reason=reason)
                changes.append(Change(post_id, "cancelled", reason))
            elif state in ("publishing", "published") and route_delete == "delete_published":
                jobs.append(post_id)
                changes.append(Change(post_id, "delete_published", reason))
            else:
                changes.append(Change(post_id, "left", f"the post is {state}"))
    for post_id in jobs:
        ctx.enqueue_child("donor_change", f"delete:{post_id}", {"post_id": post_id, "delete": True}, post_id=post_id)
    return changes


# -- the donor_change job's work ------------------------------------------------------------------------


def _edit_row(ctx: JobContext, edit_id: int) -> dict[str, Any]:
    row = ctx.store.one("SELECT * FROM post_edits WHERE id = ?", (edit_id,))
    if row is None:
        raise LookupError(f"no post edit {edit_id}")
    return row


def _set_edit(ctx: JobContext, edit_id: int, status: str, **fields: Any) -> None:
    fields = {**fields, "status": status, "updated_at": iso()}
    ctx.store.execute(
        f"UPDATE post_edits SET {', '.join(f'{c} = ?' for c in fields)} WHERE id = ?", [*fields.values(), edit_id]
    )


def _skip(ctx: JobContext, edit_id: int, reason: str) -> dict[str, Any]:
    _set_edit(ctx, edit_id, "skipped", reason=reason)
    ctx.log("edit_skipped", reason)
    return {"edit_id": edit_id, "skipped": reason}


def _published_or_wait(ctx: JobContext, post: dict[str, Any]) -> bool:
    if post["state"] == "publishing":
        raise Reschedule(30, f"post {post['id']} is being published; the donor's change follows it")
    return bool(post["state"] == "published")


def edit_published(ctx: JobContext, post_id: int, edit_id: int, *, deadline: float) -> dict[str, Any]:
    """Our published message(s) of the post take the donor's edited text, rewritten once (exactly-once:
    the rewrite is kept on the edit's row; editing again to the same text is no change)."""
    from contentq.publish.render import caption_limit_for, post_media, render
    from contentq.rewrite.core import build_task, load_route, rewriter_for

    edit = _edit_row(ctx, edit_id)
    if edit["status"] in ("edited", "skipped", "failed"):
        return {"edit_id": edit_id, "done": edit["status"]}
    post = get_post(ctx.store, post_id)
    if not _published_or_wait(ctx, post):
        return _skip(ctx, edit_id, f"the post is {post['state']}")
    route = load_route(ctx.settings, post["route"])
    if route.publisher != "telegram":
        return _skip(ctx, edit_id, f"the route publishes to the {route.publisher}: nothing to edit in Telegram")
    if post["published_at"] and now() - parse(post["published_at"]) > EDIT_WINDOW:
        return _skip(ctx, edit_id, "published more than 48 h ago: outside Telegram's edit window")
    html = edit["html"]
    if html is None:
        donor = {**post, "text_html": edit["source_html"]}
        task = build_task(ctx.runtime, donor, route, ctx.job_id, deadline=deadline)
        result = rewriter_for(ctx.runtime, route).rewrite(task, ctx)
        if result.skipped:
            return _skip(ctx, edit_id, f"the rewriter skipped the edited text: {result.skip_reason}")
        html = result.html
        _set_edit(ctx, edit_id, "rewritten", html=html)
    gateway = gateway_of(ctx.runtime)
    from contentq.flow.channels import resolve_channel

    gateway.ensure_ready()
    target = resolve_channel(ctx.store, gateway, post["target"] or route.target, role="target")
    media = post_media(ctx.store, ctx.settings, post_id)
    rendered = render({**post, "rewrite_html": html}, media, route=route, text_limit=ctx.settings.text_limit,
                      caption_limit=caption_limit_for(ctx.settings, gateway.account()))  # fmt: skip
    sent = ctx.store.query(
        "SELECT part, kind, message_ids FROM sends WHERE post_id = ? AND status = 'sent'"
        " AND round = (SELECT MAX(round) FROM sends WHERE post_id = ?) ORDER BY part",
        (post_id, post_id),
    )
    shape = [s["kind"] for s in sent]
    if shape != [p.kind for p in rendered.parts]:
        return _skip(ctx, edit_id, f"the edited text needs {len(rendered.parts)} message(s) shaped "
                     f"{[p.kind for p in rendered.parts]}, the post went out as {shape}: not edited")  # fmt: skip
    _set_edit(ctx, edit_id, "editing")
    edited: list[int] = []
    for part, send in zip(rendered.parts, sent, strict=True):
        ids = json.loads(send["message_ids"] or "[]")
        if not ids or (part.kind != "text" and not part.html):
            continue  # an album's later chunks carry no caption
        try:
            gateway.edit_message(target, int(ids[0]), part.html)
        except tg_errors.MessageNotModifiedError:
            pass  # a retry after the edit went through: already this text
        except tg_errors.MessageEditTimeExpiredError:
            return _skip(ctx, edit_id, "Telegram refused: the edit window of the message is over")
        except (tg_errors.FloodWaitError, tg_errors.FloodPremiumWaitError) as exc:
            raise Reschedule(int(exc.seconds) + 1, f"FLOOD_WAIT of {exc.seconds} s editing post {post_id}") from None
        edited.append(int(ids[0]))
    _set_edit(ctx, edit_id, "edited", message_ids=json.dumps(edited), reason=None)
    ctx.log("edited", f"post {post_id}: {len(edited)} message(s) of {target.ref} edited after the donor's edit")
    return {"edit_id": edit_id, "post_id": post_id, "edited": edited}


def delete_published(ctx: JobContext, post_id: int) -> dict[str, Any]:
    """Our messages of a published post deleted after the donor deleted theirs (deleting twice is harmless)."""
    from contentq.flow.channels import resolve_channel
    from contentq.rewrite.core import load_route

    post = get_post(ctx.store, post_id)
    if not _published_or_wait(ctx, post):
        return {"post_id": post_id, "skipped": post["state"]}
    route = load_route(ctx.settings, post["route"])
    ids = [int(i) for s in ctx.store.query(
        "SELECT message_ids FROM sends WHERE post_id = ? AND status = 'sent'", (post_id,)
    ) for i in json.loads(s["message_ids"] or "[]")]  # fmt: skip
    if route.publisher == "telegram" and ids:
        gateway = gateway_of(ctx.runtime)
        gateway.ensure_ready()
        target = resolve_channel(ctx.store, gateway, post["target"] or route.target, role="target")
        gateway.delete_messages(target, ids)
        ctx.store.execute("UPDATE sends SET status = 'deleted', updated_at = ? WHERE post_id = ? AND status = 'sent'",
                          (iso(), post_id))  # fmt: skip
    reason = f"deleted from {route.target} ({len(ids)} message(s)) after the donor deleted it"
    lifecycle.move(ctx.store, post_id, "withdrawn", reason=reason)
    ctx.log("deleted", reason)
    return {"post_id": post_id, "deleted": ids}
