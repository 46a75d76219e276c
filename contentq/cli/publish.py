"""`contentq publish POST_ID [--now] [--dry-run]`, `contentq dispatch [--limit N]`, `contentq rules list`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from contentq.cli import typer_app
from contentq.cli.common import LIMIT_MAX, JsonOpt, PostIdArg, WideOpt, runtime
from contentq.cli.render import Col, console, ok, print_json, table
from contentq.flow.dispatch import dispatch as run_dispatch
from contentq.flow.rules import list_rules


class _CliReporter:
    def log(self, event: str, message: str = "", *, level: str = "info", **data: object) -> None:
        style = {"warning": "yellow", "error": "red"}.get(level, "dim")
        console.print(f"[{style}]{escape(event)}[/{style}] {escape(message)}", highlight=False)

    def notify(self, key: str, message: str, level: str = "warning") -> bool:
        return runtime().notifier.notify(key, message, level=level)


def publish(
    post_id: PostIdArg,
    now_: Annotated[
        bool, typer.Option("--now", help="Publish from this process right away instead of through the worker.")
    ] = False,
    dry: Annotated[
        bool, typer.Option("--dry-run", help="Write the rendered post to the outbox folder; Telegram is not touched.")
    ] = False,
) -> None:
    """Publish a post now, skipping its slot and approval (through the publish queue unless --now)."""
    from contentq.publish.core import dry_run, publish_now  # imports Telethon: not at CLI start

    rt = runtime()
    if dry:
        folder = dry_run(rt, post_id)
        ok(f"post {post_id} rendered to {folder}")
        return
    result = publish_now(rt, post_id, in_process=now_, reporter=_CliReporter())
    if not now_:
        ok(f"post {post_id} queued for publishing (job {result['job'] or '?'}); a worker on the publish queue sends it")
        return
    if "deliveries" in result:  # a route with destinations: each delivery has its own job
        jobs = ", ".join(f"{d['destination']} ({d['job'] or d['state']})" for d in result["deliveries"])
        ok(f"post {post_id} handed to its deliveries: {jobs}; a worker on the publish queue sends them")
        return
    ok(f"post {post_id} published: {result.get('link')}")


def dispatch(
    limit: Annotated[int | None, typer.Option(help="Hand over at most this many posts.", min=1, max=LIMIT_MAX)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand due posts to the publish queue and fire due auto-posting rules (cron: every minute)."""
    result = run_dispatch(runtime(), limit=limit)
    if as_json:
        print_json(result)
        return
    for rule in result["rules"]:
        note = f" ({rule['skipped']})" if rule.get("skipped") else ""
        console.print(escape(f"rule {rule['route']}: due {rule['due']} → job {rule['job']}{note}"), highlight=False)
    rules = len(result["rules"])
    ok(f"{result['now']} post(s) queued now, {result['delayed']} queued for their slot, {rules} rule(s) fired")


rules_app = typer_app(help="Auto-posting rules: routes with a generate section.", no_args_is_help=True)


@rules_app.command("list")
def rules_list(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """Each rule: topic, times, next run, runs, successes and last error (--wide adds days and posts)."""
    rows = list_rules(runtime())
    if as_json:
        print_json(rows)
        return
    table(
        rows,
        ["route", Col("topic", fit="ellipsis"), "times", Col("days", wide=True), ("next_run_local", "next run"),
         "runs", ("successes", "ok"), Col("posts", wide=True), Col("last_error", fit="ellipsis")],
        title="rules",
        empty="no route has a [generate] section",
        wide=wide,
    )  # fmt: skip
