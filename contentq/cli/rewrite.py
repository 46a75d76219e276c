"""`contentq rewrite` (enqueue rewrite jobs) and `contentq usage` (LLM tokens and cost per day and route).

Imported by every CLI run: nothing heavy at module level (the OpenAI SDK is never needed here).
"""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, console, print_json, table
from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError
from contentq.rewrite.enqueue import enqueue_rewrites
from contentq.rewrite.usage import usage_summary, usage_totals
from contentq.store.batches import list_batches


def rewrite(
    post_ids: Annotated[
        list[int] | None, typer.Argument(help="Posts to rewrite (ids from `contentq posts list`).")
    ] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Every post still waiting in 'collected'.")] = False,
    route: Annotated[str | None, typer.Option(help="With --pending: only this route.")] = None,
    again: Annotated[
        bool,
        typer.Option(
            "--again",
            help="Rewrite posts that are rewritten but not yet published anew (awaiting approval, scheduled): "
            "back to 'collected' with a new rewrite job, as the bot's Rewrite again button does.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue rewrite jobs (collect does this by itself; use it after a fix, or for failed rewrites)."""
    if not post_ids and not pending:
        raise ContentqError("give post ids or --pending (every post still in 'collected')")
    if again:
        if pending:
            raise ContentqError("--again takes post ids, not --pending")
        from contentq.review.posts import rewrite_again

        rt = runtime()
        rows = [{"post": i, "job": rewrite_again(rt, i)["rewrite_job"], "result": "queued"} for i in post_ids or []]
    else:
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
    """LLM usage per day (UTC) and route: calls (failed ones included), failed, posts, tokens, estimated cost.

    `batch` counts the calls made through the Batch API, at its price (CONTENTQ_OPENAI_BATCH_PRICE_SHARE)."""
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
        [
            "day",
            "route",
            "calls",
            "failed",
            ("batch", "batch"),
            "posts",
            "tokens_in",
            "tokens_out",
            ("cost_usd", "cost $ (est.)"),
        ],
        title=f"LLM usage since {since}",
        empty=f"no LLM calls in the last {since}",
        wide=wide,
    )


def batches(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest batches shown.")] = 20,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Rewrite batches (OpenAI Batch API): status, posts answered, failed and rewritten directly.

    A route with rewrite_mode = "batch" or "auto" sends its rewrites in batches (docs/content.md, "Batch
    rewrites"); `contentq jobs show JOB` shows a batch's log and its child rewrite jobs."""
    rows = list_batches(runtime().store, limit=limit)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["created"] = (row["created_at"] or "")[:16].replace("T", " ")
    table(
        rows,
        [
            "id",
            ("job_id", "job"),
            "status",
            "lines",
            "queued",
            "answered",
            "failed",
            "direct",
            Col("created", wide=True),
        ],  # fmt: skip
        title="rewrite batches",
        empty='no rewrite batch yet (routes with rewrite_mode = "batch" or "auto" make them)',
        wide=wide,
    )
