"""`contentq rewrite` (enqueue rewrite jobs) and `contentq usage` (LLM tokens and cost per day and route).

Imported by every CLI run: nothing heavy at module level (the OpenAI SDK is never needed here; the breaker
line of `contentq queue status` is read straight from Redis by `contentq.ops.breakers`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from contentq.cli import queue as queue_cli
from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import console, print_json, table
from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError, NotFoundError
from contentq.ops.breakers import llm_breaker_status
from contentq.rewrite.usage import usage_summary, usage_totals
from contentq.runtime.context import Runtime

queue_cli.STATUS_PROVIDERS.append(llm_breaker_status)


def enqueue_rewrites(rt: Runtime, post_ids: list[int], *, pending: bool, route: str | None) -> list[dict[str, Any]]:
    """Enqueue a rewrite job per post; a post whose earlier rewrite failed is taken back to 'collected'.

    Raises NotFoundError, before enqueuing anything, when one of `post_ids` does not exist.
    """
    from contentq.runtime.tracking import enqueue
    from contentq.store.posts import transition

    store = rt.store
    ids = list(dict.fromkeys(post_ids))
    missing = [i for i in ids if store.scalar("SELECT 1 FROM posts WHERE id = ?", (i,)) is None]
    if missing:
        which = ", ".join(str(i) for i in missing)
        raise NotFoundError(
            f"no post{'s' if len(missing) > 1 else ''} {which}; nothing was enqueued (`contentq posts list` shows ids)"
        )
    if pending:
        sql = "SELECT id FROM posts WHERE state = 'collected'" + (" AND route = ?" if route else "") + " ORDER BY id"
        ids += [row["id"] for row in store.query(sql, (route,) if route else ()) if row["id"] not in ids]
    rows: list[dict[str, Any]] = []
    for post_id in ids:
        post = store.one("SELECT id, state, rewrite_html FROM posts WHERE id = ?", (post_id,))
        if post is None:  # deleted meanwhile
            rows.append({"post": post_id, "job": None, "result": "no such post"})
            continue
        state = post["state"]
        if state == "failed" and post["rewrite_html"] is None:
            transition(store, post_id, "failed", "collected", state_reason="rewrite requested again")
            state = "collected"
        if state not in ("collected", "rewriting"):
            rows.append({"post": post_id, "job": None, "result": f"skipped: post is {state}"})
            continue
        job = enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)
        rows.append(
            {"post": post_id, "job": job["id"], "result": "already queued" if job.get("deduplicated") else "queued"}
        )
    return rows


def rewrite(
    post_ids: Annotated[
        list[int] | None, typer.Argument(help="Posts to rewrite (ids from `contentq posts list`).")
    ] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Every post still waiting in 'collected'.")] = False,
    route: Annotated[str | None, typer.Option(help="With --pending: only this route.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue rewrite jobs (collect does this by itself; use it after a fix, or for failed rewrites)."""
    if not post_ids and not pending:
        raise ContentqError("give post ids or --pending (every post still in 'collected')")
    rows = enqueue_rewrites(runtime(), post_ids or [], pending=pending, route=route)
    if as_json:
        print_json(rows)
        return
    table(rows, ["post", "job", "result"], title="rewrite", empty="no post waits for a rewrite")
    if any(r["result"] == "queued" for r in rows):
        console.print("[dim]a worker on the rewrite queue runs them: `contentq worker rewrite`[/dim]")


def usage(
    since: Annotated[str, typer.Option(help="Window to sum, e.g. 24h, 7d, 30d.")] = "7d",
    route: Annotated[str | None, typer.Option(help="Only this route.")] = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """LLM usage per day (UTC) and route: calls, posts, tokens in and out, estimated cost."""
    since_iso = iso(now() - parse_duration(since))
    rows = usage_summary(runtime().store, since=since_iso, route=route)
    totals = usage_totals(rows)
    if as_json:
        print_json({"since": since_iso, "rows": rows, "total": totals})
        return
    for row in rows:
        row["cost_usd"] = f"{row['cost'] or 0:.4f}"
    if rows:
        rows.append({"day": "total", "route": "", **totals, "posts": None, "cost_usd": f"{totals['cost']:.4f}"})
    table(
        rows,
        ["day", "route", "calls", "posts", "tokens_in", "tokens_out", ("cost_usd", "cost $ (est.)")],
        title=f"LLM usage since {since}",
        empty=f"no LLM calls in the last {since}",
        wide=wide,
    )
