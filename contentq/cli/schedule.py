"""`contentq schedule list`, `contentq schedule POST_ID --at TIME`, `contentq unschedule POST_ID`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from contentq.cli import typer_app
from contentq.cli.common import LIMIT_MAX, JsonOpt, PostIdArg, WideOpt, runtime
from contentq.cli.render import Col, console, ok, print_json, table
from contentq.flow.schedule import describe, schedule_rows
from contentq.review import posts
from contentq.runtime.config import routes_config


class _ScheduleGroup(TyperGroup):
    """`schedule list` is a command; `schedule 42 --at 18:00` (a post id first) runs `schedule set`."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["set", *args]
        return super().resolve_command(ctx, args)


app = typer_app(
    cls=_ScheduleGroup,
    help="The publishing schedule: `schedule list`, `schedule POST_ID --at TIME`.",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(help="At most this many, soonest first.", min=1, max=LIMIT_MAX)] = 500,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Scheduled posts, soonest first, with the slot in the route's time zone; then each route's schedule
    (--wide adds each post's target and its slot in UTC)."""
    rt = runtime()
    config = routes_config(rt)
    rows = schedule_rows(rt.store, config.routes, limit=limit)
    routes: list[dict[str, Any]] = [
        {
            "route": r.name,
            "target": r.target,
            "schedule": describe(r.schedule),
            "approval": r.approval,
            "publisher": r.publisher,
        }  # fmt: skip
        for r in config.routes.values()
    ]
    if as_json:
        print_json({"posts": rows, "routes": routes})
        return
    for r in rows:
        r["dispatched"] = bool(r["dispatched_at"])
    table(
        rows,
        [
            "id",
            "route",
            Col("target", wide=True),  # the routes table below names each route's target
            "state",
            Col("scheduled_at", "slot (UTC)", wide=True),
            ("local_time", "slot (route time)"),
            "dispatched",
            Col("title", fit="ellipsis"),
        ],  # fmt: skip
        title="schedule",
        empty="no posts scheduled",
        wide=wide,
    )
    table(routes, ["route", "target", Col("schedule", fit="wrap"), "approval", "publisher"], title="routes",
          empty="no routes", wide=wide)  # fmt: skip


@app.command("set")
def set_(
    post_id: PostIdArg,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="'now', '+2h', '18:30' or '2025-06-01 18:30' (in the route's time zone), or ISO with an offset.",
        ),
    ],
) -> None:
    """Publish a post at a given time, whatever the route's slots say (also: `schedule POST_ID --at TIME`)."""
    result = posts.schedule_at(runtime(), post_id, at)
    ok(f"post {post_id} scheduled for {result['scheduled_at']} ({result['local']})")
    if result["note"]:
        console.print(f"[yellow]note:[/yellow] {escape(result['note'])}", highlight=False)


def unschedule(post_id: PostIdArg) -> None:
    """Take a scheduled post off the schedule; it waits for `posts approve` or `schedule ID --at`."""
    posts.unschedule(runtime(), post_id)
    ok(f"post {post_id} unscheduled; it waits in awaiting_approval")
