"""`contentq publish POST_ID [--now] [--dry-run]`, `contentq dispatch [--limit N]`, `contentq rules list`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from contentq import pipeline
from contentq.cli.common import LIMIT_MAX, JsonOpt, PostIdArg, WideOpt, runtime
from contentq.cli.render import Col, console, ok, print_json, table
from contentq.clock import iso, now
from contentq.dispatch import cancel_publish_job, dispatch_post
from contentq.dispatch import dispatch as run_dispatch
from contentq.errors import ContentqError
from contentq.rules import list_rules
from contentq.runtime.context import FatalJobError, Reschedule
from contentq.runtime.tracking import enqueue
from contentq.store.posts import get_post

PUBLISHABLE = ("rewritten", "awaiting_approval", "scheduled", "failed")


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
    from contentq.publish import dry_run, publish_post  # imports Telethon: not at CLI start

    rt = runtime()
    if dry:
        folder = dry_run(rt, post_id)
        ok(f"post {post_id} rendered to {folder}")
        return
    post = get_post(rt.store, post_id)
    if post["state"] == "published":
        raise ContentqError(f"post {post_id} is already published: {post['link']}")
    if post["state"] == "publishing":
        raise ContentqError(f"post {post_id} is being published; `contentq jobs list --kind publish` shows the job")
    if post["state"] not in PUBLISHABLE or post["rewrite_html"] is None and post["state"] == "rewritten":
        raise ContentqError(f"post {post_id} is {post['state']}; it cannot be published (yet)")
    cancel_publish_job(rt, post_id)
    if pipeline.schedule_post(rt, post_id, from_states=PUBLISHABLE, at=now(), dispatch=False) is None:
        raise ContentqError(f"post {post_id} changed meanwhile; look at `contentq posts show {post_id}`")
    if not now_:
        job = dispatch_post(rt, post_id)
        job_id = job["job"] if job else "?"
        ok(f"post {post_id} queued for publishing (job {job_id}); a worker on the publish queue sends it")
        return
    rt.store.execute("UPDATE posts SET dispatched_at = ? WHERE id = ?", (iso(), post_id))
    try:
        result = publish_post(rt, post_id, _CliReporter(), force=True)
    except Reschedule as wait:
        job = enqueue(rt, "publish", str(post_id), {}, post_id=post_id, delay=wait.delay)
        raise ContentqError(
            f"not published yet: {wait.reason}; job {job['id']} publishes it in {wait.delay:.0f} s (needs a worker)"
        ) from None
    except FatalJobError as exc:
        raise ContentqError(f"post {post_id} failed: {exc}") from None
    if result.get("skipped"):
        raise ContentqError(f"post {post_id} was not published: {result['skipped']}")
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


rules_app = typer.Typer(help="Auto-posting rules: routes with a generate section.", no_args_is_help=True)


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
