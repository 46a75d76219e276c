"""`contentq rewrite` (enqueue rewrite jobs) and `contentq usage` (LLM and image cost per day and route).

Imported by every CLI run: nothing heavy at module level (the OpenAI SDK is never needed here).
"""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, console, print_json, table
from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError
from contentq.rewrite.budget import status as budget_status
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
    """LLM and image API usage per day (UTC) and route: calls, tokens, cache hits, images, estimated cost.

    `batch` counts the calls made through the Batch API, at its price (CONTENTQ_OPENAI_BATCH_PRICE_SHARE)."""
    since_iso = iso(now() - parse_duration(since))
    rt = runtime()
    rows = usage_summary(rt.store, since=since_iso, route=route)
    totals = usage_totals(rows)
    budgets = [b for b in budget_status(rt) if route is None or b["budget"] in (f"route {route}", "all routes")]
    if as_json:
        print_json({"since": since_iso, "rows": rows, "total": totals, "budgets": budgets})
        return
    if rows:
        rows.append({"day": "total", "route": "", **totals, "posts": None})
    for row in rows:
        row["cost_usd"] = f"{row['cost'] or 0:.4f}"
        row["saved_usd"] = f"{row['saved'] or 0:.4f}"
        row["image_usd"] = f"{row['image_cost'] or 0:.4f}"
        share = row.get("cache_share")
        row["cached_pct"] = None if share is None else f"{share * 100:.0f}%"
    table(
        rows,
        ["day", "route", "calls", Col("failed", wide=True), Col("batch", wide=True), Col("posts", wide=True),
         "tokens_in",
         Col("tokens_cached", "tokens cached", wide=True), ("cached_pct", "cache hits"), "tokens_out", "images",
         Col("image_usd", "images $", wide=True), ("cost_usd", "cost $ (est.)"), ("saved_usd", "cache saved $")],
        title=f"LLM and image usage since {since}",
        empty=f"no LLM or image API calls in the last {since}",
        wide=wide,
    )  # fmt: skip
    notes = []
    if rows and totals["tokens_in"]:
        notes.append(
            f"prompt cache: {totals['tokens_cached']} of {totals['tokens_in']} input tokens served from the "
            f"provider's cache ({(totals['cache_share'] or 0) * 100:.1f}%), ${totals['saved']:.4f} saved"
        )
    if rows and totals["images"]:
        notes.append(f"images: {totals['images']} for ${totals['image_cost']:.4f}")
    if notes:
        console.print(f"[dim]{'; '.join(notes)}[/dim]")
    if budgets:
        for row in budgets:
            row["spent_of"] = f"{row['spent']:.2f} / {row['limit']:.2f}"
            row["pct"] = f"{row['share'] * 100:.0f}%"
        table(
            budgets,
            ["budget", "period", ("spent_of", "spent / budget $"), ("pct", "%"), "state", "on_budget",
             ("ends_at", "period ends")],
            title="budgets (this period)",
        )  # fmt: skip


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
