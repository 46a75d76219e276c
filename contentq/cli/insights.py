"""`contentq insights`: what published posts achieved, and what to change; `contentq insights fetch` (cron)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.text import Text

from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, console, ok, plain, print_json, table
from contentq.errors import ContentqError
from contentq.insights.analysis import Insights
from contentq.insights.report import DEFAULT_DAYS, build, to_csv
from contentq.runtime.tracking import enqueue

app = typer_app(
    help="What published posts achieved: per target, donor, slot and rewrite, with suggestions (`insights fetch` "
    "from cron collects the figures).",
)


def _n(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


@app.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", help="Posts published this many days back.")] = DEFAULT_DAYS,
    route: Annotated[str | None, typer.Option("--route", help="Only this route.")] = None,
    min_posts: Annotated[
        int | None,
        typer.Option("--min-posts", help="Fewest posts a suggestion rests on (default CONTENTQ_INSIGHTS_MIN_POSTS)."),
    ] = None,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print one CSV table (a `section` column per row).")] = False,
    wide: WideOpt = False,
) -> None:
    """What published posts achieved: per target, donor, slot and rewrite, with suggestions.

    Posts are compared by their views 24 h after publication (interpolated from the samples `insights fetch`
    takes), and every figure says how many posts it rests on.
    """
    if ctx.invoked_subcommand is not None:
        return
    if as_json and as_csv:
        raise ContentqError("give --json or --csv, not both")
    report = build(runtime(), days=days, route=route, min_posts=min_posts)
    if as_json:
        print_json(report.as_dict())
    elif as_csv:
        sys.stdout.write(to_csv(report))
    else:
        render(report, wide)


def render(report: Insights, wide: bool = False) -> None:
    title = (
        f"Insights since {report.since[:16].replace('T', ' ')} UTC: {report.posts} posts, "
        f"{report.measured} with figures at 24 h"
    )
    console.print(Text(plain(title), style="bold"))
    for line in report.findings or ["nothing to suggest yet"]:
        console.print(Text("• " + plain(line)), overflow="fold")  # wrapped at the terminal's width
    table(
        [{"route": t.route, "destination": t.destination, "posts": t.measured, "views": _n(t.median_views_24h),
          "fwd": _pct(t.forwards_per_view), "react": _pct(t.reactions_per_view),
          "subs": "–" if not t.subscribers else f"{t.subscribers[-1][1]:,}",
          "change": "–" if t.subscribers_change is None else f"{t.subscribers_change:+,}"} for t in report.targets],
        [Col("route", fit="ellipsis"), Col("destination", fit="ellipsis"), Col("posts"),
         Col("views", "views 24h"), Col("fwd", "fwd/view"), Col("react", "react/view"), Col("subs", "subscr."),
         Col("change", wide=True)],
        title="Targets (medians at 24 h)", wide=wide,
    )  # fmt: skip
    table(
        [{"route": d.route, "donor": d.source, "posts": d.posts, "views": _n(d.median_views_24h),
          "vs": _x(d.ratio), "suggestion": d.suggestion, "destination": d.destination} for d in report.donors],
        [Col("route", fit="ellipsis"), Col("donor", fit="ellipsis"), Col("posts"), Col("views", "views 24h"),
         Col("vs", "vs route"), Col("suggestion"), Col("destination", fit="ellipsis", wide=True)],
        title="Donors", wide=wide,
    )  # fmt: skip
    table(
        [{"route": s.route, "slot": s.label, "posts": s.posts, "views": _n(s.median_views_24h), "vs": _x(s.ratio),
          "destination": s.destination} for s in report.slots],
        [Col("route", fit="ellipsis"), Col("slot"), Col("posts"), Col("views", "views 24h"),
         Col("vs", "vs route"), Col("destination", fit="ellipsis", wide=True)],
        title="Slots (hour of the week, in the route's time zone)", wide=wide,
    )  # fmt: skip
    table(
        [{"route": r.route, "rewriter": r.rewriter, "posts": r.posts, "cost": f"${r.llm_cost:.4f}",
          "per_post": "–" if r.cost_per_post is None else f"${r.cost_per_post:.4f}",
          "per_1000": "–" if r.cost_per_1000_views is None else f"${r.cost_per_1000_views:.4f}",
          "views": _n(r.median_views_24h)} for r in report.rewrites + report.rewriters],
        [Col("route", fit="ellipsis"), Col("rewriter"), Col("posts"), Col("cost", "LLM cost", wide=True),
         Col("per_post", "per post"), Col("per_1000", "per 1k views"), Col("views", "views 24h")],
        title="Rewrites", wide=wide,
    )  # fmt: skip
    for label, lines in (("Best posts of the week", report.best), ("Worst posts of the week", report.worst)):
        table(
            [{"post": p.post_id, "donor": p.source, "slot": p.slot, "views": _n(p.views_24h), "vs": _x(p.ratio),
              "link": p.link or "", "route": p.route} for p in lines],
            [Col("post"), Col("donor", fit="ellipsis"), Col("slot"), Col("views", "views 24h"), Col("vs", "vs route"),
             Col("link", fit="ellipsis"), Col("route", wide=True)],
            title=label, wide=wide, empty=f"{label.lower()}: none measured yet",
        )  # fmt: skip


@app.command()
def fetch(
    days: Annotated[
        int | None, typer.Option("--days", help="Measure posts published this many days back (default 14).")
    ] = None,
    now: Annotated[bool, typer.Option("--now", help="Fetch right here instead of through the queues.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue one fetch round of views, forwards, reactions and subscribers (cron: hourly)."""
    from contentq.insights.fetch import fetch_round, new_round

    if days is not None and not 1 <= days <= 365:
        raise ContentqError(f"--days {days}: give 1 to 365")
    rt = runtime()
    round_ = new_round()
    if now:
        report = fetch_round(rt, round_, days=days)
        if as_json:
            print_json(report.as_dict())
            return
        requests = ", ".join(f"{k} {v}" for k, v in sorted(report.requests.items())) or "none"
        ok(f"round {round_}: {report.sampled} samples of {report.items} posts ({report.gone} deleted); "
           f"requests: {requests}")  # fmt: skip
        return
    job = enqueue(rt, "insights", f"round {round_}", {"round": round_, "days": days})
    if as_json:
        print_json({"job_id": job["id"], "round": round_, "deduplicated": bool(job.get("deduplicated"))})
        return
    ok(f"enqueued {job['id']} (round {round_}); `contentq jobs logs {job['id']}` follows it")
