"""`contentq posts`: list, show, approve, reject, edit, and the states a post goes through."""

from __future__ import annotations

from typing import Annotated, Any

import click
import typer
from rich.table import Table
from rich.text import Text

from contentq import lifecycle
from contentq.cli import typer_app
from contentq.cli.common import LIMIT_MAX, JsonOpt, PostIdArg, WideOpt, runtime
from contentq.cli.render import Col, console, details, ok, print_json, table, terminal_safe
from contentq.content.html import html_to_text, visible_len_utf16
from contentq.errors import ContentqError
from contentq.lifecycle import STATES
from contentq.review import posts
from contentq.review.posts import delivery_json, post_json
from contentq.store.search import search_posts

app = typer_app(help="Posts: list, show, approve, reject, edit; the states a post goes through.", no_args_is_help=True)


def _snippet(row: dict[str, Any], width: int = 50) -> str:
    text = row.get("title") or html_to_text(row.get("rewrite_html") or row.get("text_html") or "")
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help=f"Only posts in this state: {', '.join(lifecycle.STATES)}.")] = None,
    route: Annotated[str | None, typer.Option(help="Only posts of this route.")] = None,
    search: Annotated[
        str | None,
        typer.Option(help="Only posts whose original or rewritten text has these words (the last one as a prefix)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=LIMIT_MAX)] = 50,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List posts, newest first (--wide adds the link); --search finds them by their words (SQLite FTS5)."""
    rt = runtime()
    if search is not None and search.strip():
        if state is not None and state not in STATES:
            raise ContentqError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
        rows = search_posts(rt.store, search, state=state, route=route, limit=limit, every_column=True)[0]
    else:
        rows = posts.list_posts(rt, state=state, route=route, limit=limit)
    if as_json:
        print_json([post_json(r) for r in rows])
        return
    for r in rows:
        r["text"] = _snippet(r)
        r["when"] = r["published_at"] or r["scheduled_at"]
    # Why a post was filtered or is a duplicate (with its similarity): shown whenever some post has one.
    reason = [Col("state_reason", "reason", fit="ellipsis")] if any(r.get("state_reason") for r in rows) else []
    # Posts of routes with destinations: where each of its deliveries stands.
    deliveries = [Col("deliveries", fit="wrap")] if any(r.get("deliveries") for r in rows) else []
    table(rows, ["id", "route", "state", "kind", Col("text", fit="ellipsis"), *reason, *deliveries,
                 ("when", "when (UTC)"), Col("link", wide=True)], title="posts", empty="no posts match",
          wide=wide)  # fmt: skip


@app.command()
def show(post_id: PostIdArg, as_json: JsonOpt = False) -> None:
    """Show a post: its state and times, and the original next to the rewrite."""
    shown = posts.post_details(runtime(), post_id)
    post, media, sends = shown.post, shown.media, shown.sends
    if as_json:
        print_json(shown.as_json())
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
    info["media"] = (
        ", ".join(
            f"{m['kind']} ({m['origin']}{'' if m.get('path') else ', no file: left out when published'})" for m in media
        )
        or None
    )
    if post.get("original_html"):
        info["donor footer"] = "stripped (the text as posted: `posts show --json`, original_html)"
    details(info, title=f"post {post_id}")
    original = shown.original
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
    if shown.deliveries:
        rows = [delivery_json(d) for d in shown.deliveries]
        for row in rows:
            row["when"] = row["published_at"] or row["due_at"]
            row["why"] = "; ".join(x for x in (row["reason"], row["notes"]) if x) or None
        table(rows, ["destination", "state", ("when", "when (UTC)"), "link", Col("why", fit="wrap")],
              title="deliveries")  # fmt: skip
    _history(shown.history)


def _history(rows: list[dict[str, Any]]) -> None:
    """Every move of the post: when, by which event, from which state to which, who, why."""
    for r in rows:
        r["move"] = f"{r['from_state'] or lifecycle.NEW} → {r['state']}"
        r["event"] = r["event"] or "(before history)"  # rows older than the lifecycle's record
    table(rows, [("at", "at (UTC)"), "event", "move", "actor", Col("reason", fit="wrap")], title="history",
          empty="no recorded moves")  # fmt: skip


@app.command()
def states(
    as_json: JsonOpt = False,
    mermaid: Annotated[
        bool, typer.Option("--mermaid", help="Print a Mermaid state diagram (docs/pipeline.md's).")
    ] = False,
) -> None:
    """The states a post goes through and the moves between them, each named by its event; what follows a move."""
    machine = lifecycle.as_json()
    if as_json:
        print_json(machine)
        return
    if mermaid:
        typer.echo(lifecycle.mermaid(), nl=False)
        return
    table(machine["states"], ["state", Col("meaning", fit="wrap")], title="states")
    moves = [{**m, "from": ", ".join(m["from"]), "then": ", ".join(m["then"])} for m in machine["moves"]]
    table(moves, ["event", Col("from", fit="wrap"), "to", Col("then", fit="wrap"), Col("meaning", fit="wrap")],
          title=f"moves ({lifecycle.NEW}: before the post is stored)")  # fmt: skip
    table(machine["follow_ups"], ["name", Col("does", fit="wrap")], title="follow-ups (what a move's `then` names)")


@app.command()
def approve(post_id: PostIdArg) -> None:
    """Approve a post awaiting approval: it takes the next free slot of its route."""
    result = posts.approve(runtime(), post_id)
    ok(f"post {post_id} approved, scheduled for {result['scheduled_at']}")


@app.command()
def reject(
    post_id: PostIdArg,
    reason: Annotated[str | None, typer.Option(help="Why (kept on the post).")] = None,
) -> None:
    """Reject a post that is not yet published: it is never published."""
    posts.reject(runtime(), post_id, reason)
    ok(f"post {post_id} rejected")


@app.command()
def edit(post_id: PostIdArg) -> None:
    """Edit a post's text (Telegram HTML) in $EDITOR; the result is validated before it is saved."""
    rt = runtime()
    current = posts.text_to_edit(rt, post_id)
    edited = click.edit(current, extension=".html", require_save=True)
    if edited is None:
        console.print("[dim]not saved: nothing changed[/dim]")
        return
    saved = posts.save_text(rt, post_id, edited.rstrip("\n"))
    ok(f"post {post_id} saved, {saved['length']} characters{saved['note']}")
