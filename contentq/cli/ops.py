"""Operations commands: supervisor render, purge, stats, alerts check, metrics serve/dump, doctor, health."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, WideOpt, finite, runtime
from contentq.cli.render import Col, console, ok, print_json, probe_table, table
from contentq.clock import parse_duration
from contentq.errors import ConfigError, ContentqError
from contentq.media import human_bytes
from contentq.ops import alerts as alerts_core
from contentq.ops import doctor as doctor_core
from contentq.ops import litestream as litestream_core
from contentq.ops import supervisor as supervisor_core
from contentq.ops.probe import FAIL
from contentq.ops.purge import purge as purge_core
from contentq.ops.stats import collect_stats, parse_since
from contentq.settings import QUEUES, Settings

supervisor_app = typer_app(help="Supervisor config for the workers.", no_args_is_help=True)
alerts_app = typer_app(help="Alerts to the admin (run `alerts check` from cron).", no_args_is_help=True)
metrics_app = typer_app(help="Prometheus metrics: an HTTP endpoint or a textfile.", no_args_is_help=True)


def _env_pairs(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ContentqError(f"--env {item!r}: give KEY=VALUE")
        out[key] = value
    return out


@supervisor_app.command("render")
def supervisor_render(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: print). Creates the log directory.")
    ] = None,
    python: Annotated[
        str | None, typer.Option(help="Interpreter the programs run (default: this one, i.e. this virtualenv).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Run the programs as this user (supervisord runs as root).")] = None,
    standalone: Annotated[
        bool, typer.Option("--standalone", help="A complete supervisord.conf (own socket and pidfile under home).")
    ] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="Extra KEY=VALUE for the programs' environment (repeatable).")
    ] = None,
) -> None:
    """Render the supervisor programs from settings: one per worker group, numprocs from the concurrency settings."""
    settings = runtime().settings
    options = {"python": python, "user": user, "standalone": standalone, "extra_env": _env_pairs(env)}
    if output is None:
        text = supervisor_core.render(settings, **options)  # type: ignore[arg-type]
        for side in supervisor_core.write_side_files(settings):  # the printed programs read them
            typer.echo(f"wrote {side}", err=True)
        sys.stdout.write(text)
        return
    path = supervisor_core.write(settings, output, **options)
    ok(f"wrote {path}; logs go to {supervisor_core.logs_dir(settings)}")
    if settings.litestream_url:
        typer.echo(
            f"litestream replicates {settings.db_path} to the replica {litestream_core.config_path(settings)} names"
        )
    if standalone:
        typer.echo(f"start: supervisord -c {path}    status: supervisorctl -c {path} status 'contentq:*'")
    else:
        typer.echo("then: supervisorctl reread && supervisorctl update")


def purge(
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Retention, e.g. 30d (default: CONTENTQ_RETENTION_DAYS).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be removed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove what is past retention, in small batches that never block the workers.

    Old job records and events, ended posts (dedup keeps what it needs), unattached images and old RQ registry
    entries.
    """
    rt = runtime()
    window = parse_duration(older_than) if older_than else None
    report = purge_core(rt, window, dry_run)
    if as_json:
        print_json(report.as_dict())
        return
    label = "would remove" if dry_run else "removed"
    rows = [{"what": what, label: human_bytes(n) if what == "media bytes" else n} for what, n in report.removed.items()]
    rows += [{"what": f"kept: {what}", label: n} for what, n in report.kept.items()]
    table(rows, ["what", label], title=f"purge: ended before {report.cutoff}")
    for note in report.notes:
        typer.echo(f"note: {note}")


def stats(
    since: Annotated[str, typer.Option(help="Window: 24h, 7d … or all.")] = "24h",
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Jobs per queue and kind (count, failures, durations, retries), posts per route and state, LLM usage."""
    data = collect_stats(runtime(), parse_since(since))
    if as_json:
        print_json(data)
        return
    window = f"since {data['since'][:19].replace('T', ' ')} UTC" if data["since"] else "all time"
    for row in data["jobs"]:
        rate = row["failure_rate"]
        row["fail_%"] = None if rate is None else f"{rate * 100:.1f}"
    # The kind names its queue (maintenance holds several kinds): the queue only with --wide.
    table(
        data["jobs"],
        [Col("queue", wide=True), "kind", "count", "succeeded", "failed", ("fail_%", "failed %"),
         ("avg_ms", "avg ms"), ("p95_ms", "p95 ms"), ("avg_retries", "avg retries"), ("reschedules", "resched.")],
        title=f"jobs created {window}", empty="no jobs in the window", wide=wide,
    )  # fmt: skip
    table(
        data["posts"],
        ["route", "state", ("total", "posts now"), ("in_window", "reached in window")],
        title="posts", empty="no posts", wide=wide,
    )  # fmt: skip
    llm = data["llm"]
    rows = [*llm["by_route_model"], {"route": "total", "model": "", **llm["total"]}] if llm["by_route_model"] else []
    for row in rows:
        row["cost"] = f"{row['cost']:.4f}"
    table(rows, ["route", "model", "calls", "failed", "tokens_in", "tokens_out", "cost"], title=f"LLM usage {window}",
          empty="no LLM calls in the window", wide=wide)  # fmt: skip


@alerts_app.command("check")
def alerts_check(
    notify: Annotated[
        bool, typer.Option("--notify/--no-notify", help="Notify the admin of firing alerts (once per window).")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Check failures, queue sizes, waiting times, the LLM breaker and the last backup's age against settings."""
    checks = alerts_core.check_alerts(runtime(), notify=notify)
    if as_json:
        print_json([c.as_dict() for c in checks])
        return
    rows = []
    for c in checks:
        state = "ALERT" if c.firing else "ok"
        sent = ("sent" if c.notified else "already sent in this window") if c.firing and notify else ""
        rows.append({"check": c.check, "state": state, "value": c.value, "limit": c.threshold, "notified": sent})
    table(rows, ["check", "state", "value", "limit", Col("notified", fit="wrap")], title="alerts")
    for c in checks:
        if c.firing:
            typer.echo(f"ALERT: {c.message}")


@metrics_app.command("serve")
def metrics_serve(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)] = 9464,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 for every interface).")] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics at http://HOST:PORT/metrics until stopped."""
    from contentq.ops import metrics as metrics_core  # prometheus_client: only for the metrics commands

    rt = runtime()
    server, thread = metrics_core.serve(rt, port, host)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"metrics on http://{host}:{server.server_port}/metrics", highlight=False)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@metrics_app.command("dump")
def metrics_dump(
    path: Annotated[
        Path | None, typer.Argument(help="File to write (atomically), e.g. …/textfile_collector/contentq.prom.")
    ] = None,
) -> None:
    """Write the metrics once in the Prometheus text format (stdout without PATH), for node_exporter."""
    from contentq.ops import metrics as metrics_core  # prometheus_client: only for the metrics commands

    rt = runtime()
    if path is None:
        sys.stdout.write(metrics_core.exposition(rt))
        return
    ok(f"wrote {metrics_core.dump(rt, path)}")


def doctor(
    supervisor_config: Annotated[
        Path | None, typer.Option("--supervisor-config", help="Installed supervisor config to compare.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the LLM endpoint.", min=0.1, max=600, callback=finite)
    ] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Check the whole setup and print ok/warn/fail with the fix for each; exits 1 when a check fails.

    Settings and routes, data directory, database, backups, Redis, workers, Telegram, the LLM endpoint,
    supervisor, cron.
    """
    try:
        settings: Settings | None = runtime().settings
    except ConfigError:
        settings = None  # run_doctor loads them again and reports what is rejected as its first check
    probes = doctor_core.run_doctor(settings, supervisor_config=supervisor_config, llm_timeout=timeout)
    if as_json:
        print_json([p.as_dict() for p in probes])
    else:
        probe_table(probes, "contentq doctor")
    if any(p.status == FAIL for p in probes):
        raise typer.Exit(1)


def health(
    workers: Annotated[bool, typer.Option("--workers/--no-workers", help="Also require live workers.")] = True,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help=f"Queues that need a worker (default: all of {', '.join(QUEUES)})."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Probe for monitoring: Redis, the database, the workers and the listeners; exits 1 when one is down.

    A warning (a listener not logged in to Telegram yet) is shown with its fix and does not fail; a Telegram
    account that is logged out or banned while routes use it fails."""
    probes = doctor_core.run_health(runtime().settings, workers=workers, queues=list(queue or []) or None)
    healthy = not any(p.status == FAIL for p in probes)
    if as_json:
        print_json({"healthy": healthy, "probes": [p.as_dict() for p in probes]})
    else:
        for p in probes:
            typer.echo(f"{p.status:4} {p.check}: {p.detail}" + (f" ({p.fix})" if p.fix and p.status != "ok" else ""))
    if not healthy:
        raise typer.Exit(1)


def demo(
    home: Annotated[
        Path | None, typer.Option("--home", help="Demo data directory (default: CONTENTQ_HOME or the global --home).")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            help="Give up when jobs are still pending after this many seconds.", min=1, max=86400, callback=finite
        ),
    ] = 180,
    as_json: JsonOpt = False,
) -> None:
    """Run the pipeline end to end with no credentials, publishing to the outbox folder.

    Imports a sample channel export, cleans the posts with rules, renders cards, schedules them asap and
    publishes them to the outbox folder, with workers in this process.
    """
    from contentq.cli.common import reset_runtime
    from contentq.ops import demo as demo_core
    from contentq.runtime.context import Runtime
    from contentq.settings import get_settings, load_settings, set_overrides

    if home is not None:
        set_overrides(home=str(home.expanduser().resolve()))
        reset_runtime()
    base = get_settings()
    # Workers log at WARNING here: the demo prints its own progress.
    rt = Runtime(load_settings(home=base.home, log_level="WARNING"))
    say = (lambda _m: None) if as_json else (lambda m: ok(m))
    if not as_json:
        console.print(f"[bold]contentq demo[/bold] in {rt.settings.home}", highlight=False)
    last = {"n": -1}

    def progress(pending: int) -> None:
        if not as_json and pending and pending != last["n"]:
            console.print(f"  workers running… {pending} job(s) pending", highlight=False)
        last["n"] = pending

    try:
        result = demo_core.run_demo(rt, timeout=timeout, step=say, progress=progress)
    finally:
        rt.close()
    if as_json:
        print_json(result.as_dict())
        return
    ok(f"all jobs done in {result.seconds:.1f} s")
    queues = [{**q, "oldest": q["oldest_queued_s"], "in_redis": q["redis"]["queued"]} for q in result.queues]
    table(queues, ["queue", "queued", "in_progress", "scheduled", "failed", "paused", ("in_redis", "in Redis")],
          title="queue status")  # fmt: skip
    table(result.jobs, ["kind", "status", "n"], title="jobs")
    rows = [
        p | {"photos": f"{p['photos']} ({p['photos_missing']} missing)"} if p.get("photos_missing") else p
        for p in result.posts
    ]
    table(rows, ["id", "state", "kind", "photos", "cards", Col("preview", fit="ellipsis")], title="demo posts")
    published = sum(1 for p in result.posts if p["state"] == "published")
    ok(f"outbox: {result.outbox} ({published} posts published; each folder has post.html, meta.json and media)")
    typer.echo(
        f"routes: {result.routes_file}\n"
        "next: open a post.html in a browser; `contentq stats` and `contentq jobs list` show what ran;\n"
        "      `contentq doctor` checks a real setup (Telegram login, LLM key, supervisor, cron)."
    )
