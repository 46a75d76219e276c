"""`contentq jobs`: list, show, logs, retry, cancel."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer
from rich.text import Text

from contentq.cli import typer_app
from contentq.cli.common import LIMIT_MAX, JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, console, details, error, ok, plain, print_json, table, terminal_safe
from contentq.clock import iso, now, parse_duration
from contentq.errors import ContentqError
from contentq.runtime import tracking
from contentq.runtime.bulk import BULK_MAX, JobFilter, bulk_action, count_matching
from contentq.runtime.queues import check_queue
from contentq.store.jobs import STATUSES, decode, get_job, job_events, list_jobs

app = typer_app(help="Jobs: list, show, logs, retry, cancel.", no_args_is_help=True)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help=f"One of: {', '.join(STATUSES)}.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this job kind (collect, rewrite, publish, …).")] = None,
    since: Annotated[str | None, typer.Option(help="Only jobs created in this window, e.g. 24h or 7d.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=LIMIT_MAX)] = 50,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List jobs, newest first (--wide adds kind, queue and reschedules)."""
    if status is not None and status not in STATUSES:
        raise ContentqError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    if queue is not None:
        check_queue(queue)
    since_iso = iso(now() - parse_duration(since)) if since else None
    rows = list_jobs(runtime().store, status=status, queue=queue, kind=kind, since=since_iso, limit=limit)
    if as_json:
        print_json([decode(r) for r in rows])
        return
    for r in rows:
        r["try"] = f"{r['attempts'] - r['reschedules']}/{r['max_attempts']}"
        r["took"] = took(r["duration_ms"])
        r["note"] = (r["retry_reason"] if r["status"] == "queued" and r["next_retry_at"] else r["error"]) or ""
    # The id starts with the kind ("publish-9") and the kind names the queue: both only with --wide.
    table(
        rows,
        ["id", Col("kind", wide=True), Col("queue", wide=True), "status", "try",
         Col("reschedules", "resched.", wide=True), ("post_id", "post"), ("created_at", "created"), "took",
         Col("note", fit="ellipsis")],
        title="jobs",
        empty="no jobs match",
        wide=wide,
    )  # fmt: skip


def took(ms: float | None) -> str | None:
    """A duration as a person reads it: 850 ms, 2.4 s, 3.5 min."""
    if ms is None:
        return None
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


@app.command()
def show(job_id: Annotated[str, typer.Argument(help="Job id.")], as_json: JsonOpt = False) -> None:
    """Show one job record."""
    row = decode(get_job(runtime().store, job_id))
    if as_json:
        print_json(row)
        return
    details(row, title=f"job {job_id}")


@app.command()
def logs(
    job_id: Annotated[str, typer.Argument(help="Job id.")], as_json: JsonOpt = False, wide: WideOpt = False
) -> None:
    """Show a job's event log; tracebacks follow the table, line by line as Python printed them."""
    events = job_events(runtime().store, job_id)
    if as_json:
        print_json(events)
        return
    rows, traces = [], []
    for number, event in enumerate(events, 1):
        # A multi-line message (an error and its traceback): its first line in the table, the rest below it, where
        # a narrow column cannot fold each frame into pieces.
        first, _, rest = (event["message"] or "").partition("\n")
        if rest.strip():
            traces.append((number, event, rest))
            first += f" (traceback [{number}] below)"
        rows.append({**event, "n": number, "message": first})
    table(rows, ["n", "at", "level", "event", Col("message", fit="wrap")], title=f"events of {job_id}", wide=wide)
    for number, event, rest in traces:
        console.print(f"\n[bold][{number}] {plain(event['event'])} at {plain(event['at'])}[/bold]", highlight=False)
        console.print(Text(terminal_safe(rest.strip("\n"))), soft_wrap=True, highlight=False)


FilterOpts = {
    "queue": typer.Option(help="With --all or --all-failed: only this queue."),
    "kind": typer.Option(help="With --all: only this job kind."),
    "since": typer.Option(help="With --all: only jobs created in this window (24h, 7d)."),
    "older_than": typer.Option("--older-than", help="With --all: only jobs created at least this long ago (1h)."),
    "yes": typer.Option("--yes", "-y", help="With --all: do not ask for a confirmation."),
}


@app.command()
def retry(
    job_id: Annotated[str | None, typer.Argument(help="Job id (or --all, --all-failed).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every job of --status (failed) and the filters.")] = False,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every failed job (of --queue), at once.")] = False,
    status: Annotated[str, typer.Option(help="With --all: failed or cancelled.")] = "failed",
    queue: Annotated[str | None, FilterOpts["queue"]] = None,
    kind: Annotated[str | None, FilterOpts["kind"]] = None,
    since: Annotated[str | None, FilterOpts["since"]] = None,
    older_than: Annotated[str | None, FilterOpts["older_than"]] = None,
    yes: Annotated[bool, FilterOpts["yes"]] = False,
) -> None:
    """Run a failed or cancelled job again, or a waiting one (rescheduled, retrying later) now; logged on the job.
    --all takes every job of a status, queue, kind and age: it says how many and asks first (--yes does not ask)."""
    rt = runtime()
    if sum((job_id is not None, all_, all_failed)) != 1:
        raise ContentqError(
            "give a job id, --all (with --status, --queue, --kind, --since, --older-than) or --all-failed"
        )
    if all_:
        _bulk(JobFilter("retry", status, queue, kind, since, older_than), yes=yes)
        return
    ids = [job_id] if job_id else [r["id"] for r in list_jobs(rt.store, status="failed", queue=queue, limit=100000)]
    problems = 0
    for jid in ids:
        assert jid is not None
        try:
            row = tracking.retry(rt, jid)
        except ContentqError as exc:
            if job_id:
                raise
            problems += 1  # one job changing under us must not stop the others
            error(str(exc))
            continue
        if str(row.get("retry_reason") or "").startswith("tried now"):
            ok(f"{jid} runs now, its wait cut short (run {row['generation']})")
        else:
            ok(f"{jid} queued again (run {row['generation']})")
    if not ids:
        console.print("[dim]no failed jobs[/dim]")
    if problems:
        raise typer.Exit(1)


def _bulk(spec: JobFilter, *, yes: bool) -> None:
    """Count, confirm (unless --yes), then retry or cancel them all; exit 1 when some were skipped."""
    rt = runtime()
    spec = replace(spec, created_before=iso())  # what is counted is what is done: not the jobs created after
    count = count_matching(rt, spec)
    if not count:
        console.print(f"[dim]no {spec.describe()}[/dim]")
        return
    shown = f"more than {BULK_MAX:,} (the first {BULK_MAX:,} now)" if count > BULK_MAX else f"{count:,}"
    verb = "retry" if spec.action == "retry" else "cancel"
    if not yes and not typer.confirm(f"{verb} {shown} {spec.describe()}?", default=False):
        raise ContentqError(f"nothing done; to {verb} them without the question, add --yes")
    result = bulk_action(rt, spec)
    done = "queued again" if spec.action == "retry" else "cancelled"
    ok(f"{len(result.done):,} {spec.status} job(s) {done}")
    for skipped in result.skipped:
        error(f"{skipped['id']}: {skipped['error']}")
    if result.more:
        console.print(f"[dim]more than {BULK_MAX:,} matched: run it again for the rest[/dim]")
    if result.skipped:
        raise typer.Exit(1)


@app.command()
def cancel(
    job_id: Annotated[str | None, typer.Argument(help="Job id (or --all).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every job of --status (queued) and the filters.")] = False,
    status: Annotated[str, typer.Option(help="With --all: queued or in_progress.")] = "queued",
    queue: Annotated[str | None, FilterOpts["queue"]] = None,
    kind: Annotated[str | None, FilterOpts["kind"]] = None,
    since: Annotated[str | None, FilterOpts["since"]] = None,
    older_than: Annotated[str | None, FilterOpts["older_than"]] = None,
    yes: Annotated[bool, FilterOpts["yes"]] = False,
) -> None:
    """Cancel a job: a queued one never runs, a running one stops at its next safe point (retry once it has).
    --all takes every job of a status, queue, kind and age: it says how many and asks first (--yes does not ask)."""
    if (job_id is None) == (not all_):
        raise ContentqError("give a job id or --all (with --status, --queue, --kind, --since, --older-than)")
    if all_:
        _bulk(JobFilter("cancel", status, queue, kind, since, older_than), yes=yes)
        return
    assert job_id is not None
    row = tracking.cancel(runtime(), job_id)
    ok(f"{job_id} cancelled" + ("; its run stops at its next safe point" if row.get("stopping") else ""))
    if row.get("attempts"):
        console.print(f"[dim]it had run {row['attempts']} time(s); see `contentq jobs logs {job_id}`[/dim]")
