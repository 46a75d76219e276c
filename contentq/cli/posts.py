"""`contentq posts`: list, show, approve, reject, edit."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from rich.text import Text

from contentq import pipeline
from contentq.cli.common import LIMIT_MAX, JsonOpt, PostIdArg, WideOpt, runtime
from contentq.cli.render import Col, console, details, ok, print_json, table, terminal_safe
from contentq.clock import iso
from contentq.content.html import html_to_text, validate_html, visible_len_utf16
from contentq.content.split import split_html
from contentq.errors import ContentqError
from contentq.store.posts import STATES, get_post

app = typer.Typer(help="Posts: list, show, approve, reject, edit.", no_args_is_help=True)

EDITABLE = ("rewritten", "awaiting_approval", "scheduled", "failed")
"""States whose text can still be edited."""


def post_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if not isinstance(v, bytes | bytearray)}
    for key in ("message_ids", "source_msg_ids"):
        if isinstance(out.get(key), str):
            with contextlib.suppress(ValueError):
                out[key] = json.loads(out[key])
    return out


def _snippet(row: dict[str, Any], width: int = 50) -> str:
    text = row.get("title") or html_to_text(row.get("rewrite_html") or row.get("text_html") or "")
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help=f"Only posts in this state: {', '.join(STATES)}.")] = None,
    route: Annotated[str | None, typer.Option(help="Only posts of this route.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=LIMIT_MAX)] = 50,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List posts, newest first (--wide adds the link)."""
    if state is not None and state not in STATES:
        raise ContentqError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    where, params = [], []
    if state:
        where.append("state = ?")
        params.append(state)
    if route:
        where.append("route = ?")
        params.append(route)
    sql = "SELECT * FROM posts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
    rows = runtime().store.query(sql, [*params, limit])
    if as_json:
        print_json([post_json(r) for r in rows])
        return
    for r in rows:
        r["text"] = _snippet(r)
        r["when"] = r["published_at"] or r["scheduled_at"]
    # Why a post was filtered or is a duplicate (with its similarity): shown whenever some post has one.
    reason = [Col("state_reason", "reason", fit="ellipsis")] if any(r.get("state_reason") for r in rows) else []
    table(rows, ["id", "route", "state", "kind", Col("text", fit="ellipsis"), *reason, ("when", "when (UTC)"),
                 Col("link", wide=True)], title="posts", empty="no posts match", wide=wide)  # fmt: skip


@app.command()
def show(post_id: PostIdArg, as_json: JsonOpt = False) -> None:
    """Show a post: its state and times, and the original next to the rewrite."""
    from contentq.publish import sends_of  # imports Telethon: not at CLI start

    rt = runtime()
    post = get_post(rt.store, post_id)
    media = rt.store.query(
        "SELECT id, origin, kind, path, mime, size FROM media WHERE post_id = ? ORDER BY origin, position", (post_id,)
    )
    sends = sends_of(rt.store, post_id)
    if as_json:
        print_json({**post_json(post), "media": media, "sends": sends})
        return
    info = {
        k: post[k]
        for k in (
            "id",
            "route",
            "state",
            "state_reason",
            "kind",
            "source",
            "source_msg_id",
            "duplicate_of",
            "similarity",
            "posted_at",
            "title",
            "rewriter",
            "truncated",
            "target",
            "scheduled_at",
            "published_at",
            "link",
        )  # fmt: skip
    }
    if info["similarity"] is not None:
        info["similarity"] = f"{info['similarity']:.2f}"  # the table's one decimal would hide 0.86 vs 0.94
    info["media"] = ", ".join(f"{m['kind']} ({m['origin']})" for m in media) or None
    if post.get("original_html"):
        info["donor footer"] = "stripped (the text as posted: `posts show --json`, original_html)"
    details(info, title=f"post {post_id}")
    original = post["text_html"] or ""
    if (post["source"] or "").startswith("generate:"):
        route = pipeline.routes_config(rt).routes.get(post["route"])
        original = f"(written by the LLM on the topic: {route.generate.topic if route and route.generate else '?'})"
    side = Table(show_lines=True, header_style="bold", expand=True)
    side.add_column(f"original ({visible_len_utf16(post['text_html'] or '')} chars)", ratio=1, overflow="fold")
    rewrite = post["rewrite_html"]
    side.add_column(
        f"rewrite ({visible_len_utf16(rewrite or '')} chars)" if rewrite is not None else "rewrite", ratio=1,
        overflow="fold",
    )  # fmt: skip
    side.add_row(
        Text(terminal_safe(original)),
        Text(terminal_safe(rewrite)) if rewrite is not None else Text("(not rewritten yet)", style="dim"),
    )
    console.print(side)
    if sends:
        table(sends, ["round", "part", "kind", "status", "message_ids", Col("error", fit="wrap")], title="sends")


@app.command()
def approve(post_id: PostIdArg) -> None:
    """Approve a post awaiting approval: it takes the next free slot of its route."""
    slot = pipeline.approve(runtime(), post_id)
    ok(f"post {post_id} approved, scheduled for {iso(slot)}")


@app.command()
def reject(
    post_id: PostIdArg,
    reason: Annotated[str | None, typer.Option(help="Why (kept on the post).")] = None,
) -> None:
    """Reject a post that is not yet published: it is never published."""
    pipeline.reject(runtime(), post_id, reason)
    ok(f"post {post_id} rejected")


@app.command()
def edit(post_id: PostIdArg) -> None:
    """Edit a post's text (Telegram HTML) in $EDITOR; the result is validated before it is saved."""
    rt = runtime()
    post = get_post(rt.store, post_id)
    if post["state"] not in EDITABLE:
        raise ContentqError(f"post {post_id} is {post['state']}; only posts not yet published can be edited")
    pipeline.refuse_if_parts_out(rt.store, post_id, "edited")
    current = post["rewrite_html"] if post["rewrite_html"] is not None else post["text_html"] or ""
    edited = click.edit(current, extension=".html", require_save=True)
    if edited is None:
        console.print("[dim]not saved: nothing changed[/dim]")
        return
    edited = edited.rstrip("\n")
    problems = validate_html(edited)
    if problems:
        raise ContentqError(
            "the edited text is not valid Telegram HTML: "
            + "; ".join(problems)
            + f"; run `contentq posts edit {post_id}` again"
        )
    has_media = bool(rt.store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ?", (post_id,)))
    limit = rt.settings.text_limit
    length = visible_len_utf16(edited)
    route = pipeline.routes_config(rt).routes.get(post["route"])
    split = route is None or route.long_text == "split"
    if length > limit and not split:
        raise ContentqError(
            f"the edited text is {length} characters, over Telegram's {limit}, and route {post['route']!r} has "
            'long_text = "truncate"; shorten it, or set long_text = "split" to send it as several messages'
        )
    if not edited.strip() and not has_media:
        raise ContentqError("the edited text is empty and the post has no media; use `contentq posts reject` instead")
    states = ", ".join("?" for _ in EDITABLE)
    cursor = rt.store.execute(
        f"UPDATE posts SET rewrite_html = ?, updated_at = ? WHERE id = ? AND state IN ({states})"
        f" AND ({pipeline.PARTS_OUT_SQL}) = 0",
        (edited, iso(), post_id, *EDITABLE, post_id),
    )
    if cursor.rowcount != 1:
        pipeline.refuse_if_parts_out(rt.store, post_id, "edited")
        raise ContentqError(
            f"post {post_id} changed state while you edited it; look at `contentq posts show {post_id}`"
        )
    note = ""
    if has_media and length > rt.settings.caption_limit:
        note = f" (over the caption limit of {rt.settings.caption_limit}: the text goes as its own message)"
    if length > limit:
        note += f" (over Telegram's {limit}: sent as {len(split_html(edited, limit))} messages)"
    ok(f"post {post_id} saved, {length} characters{note}")
