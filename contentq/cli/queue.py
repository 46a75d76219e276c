"""`contentq queue`: status, pause/resume, reconcile."""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, ok, print_json, table
from contentq.integrations.breakers import status_extras
from contentq.publish.limits import destination_limits
from contentq.runtime import queues
from contentq.runtime.reconcile import reconcile as reconcile_jobs

app = typer_app(help="Queues: status, pause, resume, reconcile.", no_args_is_help=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@app.command()
def status(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """Per queue: queued, in progress, scheduled, failed, paused, workers, age of the oldest queued job."""
    rt = runtime()
    rows = queues.queue_status(rt)
    extra = status_extras(rt)
    limits = destination_limits(rt)
    if as_json:
        print_json({"queues": rows, **extra, **({"destinations": limits} if limits else {})})
        return
    for row in rows:
        row["oldest"] = _age(row["oldest_queued_s"])
        row["in_redis"] = row["redis"]["queued"]
    table(
        rows,
        ["queue", "queued", "in_progress", "scheduled", "failed", "paused", "workers", ("oldest", "oldest queued"),
         Col("in_redis", "in Redis", wide=True)],
        title="contentq queues",
        wide=wide,
    )  # fmt: skip
    if limits:  # X and Instagram accounts: their token bucket, and the deliveries waiting for them
        table(limits, ["destination", "tokens", "burst", ("per_hour", "per hour"), ("next_free", "next free (UTC)"),
                       "waiting", ("next_due", "next due (UTC)")], title="destination limits", wide=wide)  # fmt: skip
    for name, value in extra.items():
        typer.echo(f"{name}: {value}")


@app.command()
def pause(name: Annotated[str, typer.Argument(help="Queue to pause.")]) -> None:
    """Pause a queue: workers stop taking its jobs; the jobs stay queued."""
    changed = queues.set_paused(runtime(), name, True)
    ok(f"queue {name} paused" if changed else f"queue {name} was already paused")


@app.command()
def resume(name: Annotated[str, typer.Argument(help="Queue to resume.")]) -> None:
    """Resume a paused queue."""
    changed = queues.set_paused(runtime(), name, False)
    ok(f"queue {name} resumed" if changed else f"queue {name} was not paused")


@app.command()
def reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be done.")] = False,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Re-create in Redis every job SQLite holds as queued or in progress that Redis no longer has."""
    actions = reconcile_jobs(runtime(), dry_run=dry_run)
    if as_json:
        print_json(actions)
        return
    table(actions, ["job", "found", Col("action", fit="wrap")], title="reconcile",
          empty="Redis holds every queued job: nothing to do", wide=wide)  # fmt: skip
