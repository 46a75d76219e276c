"""`contentq login`, `contentq sources`, `contentq collect`, `contentq import`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, details, err_console, error, ok, plain, print_json, summary, table
from contentq.content.refs import normalize_channel_ref
from contentq.errors import ContentqError, Reschedule
from contentq.flow.channels import list_sources, resolve_channel
from contentq.integrations.telegram.access import gateway_of
from contentq.routes import load_routes
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue

if TYPE_CHECKING:  # contentq.intake.collect and the export import pull in Telethon and dedup: imported by the commands
    from contentq.intake.collect import Progress as ProgressFn

sources_app = typer_app(help="Donor channels: list, resolve.", no_args_is_help=True)


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressFn]:
    """A rich progress bar on stderr (stdout stays clean for --json); yields the (done, total) callback.

    The bar appears with the first progress report, so input refused before any work prints its error alone."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar: Progress | None = None
    task = None

    def update(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=err_console, transient=False,
            )  # fmt: skip
            bar.start()
            task = bar.add_task(plain(label), total=None)  # a file or channel name is text, not markup
        assert task is not None
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


# -- login -------------------------------------------------------------------------------------------


def _masked(phone: str | None) -> str | None:
    return None if not phone else f"+{'•' * max(0, len(phone) - 4)}{phone[-4:]}"


def login(
    status: Annotated[bool, typer.Option("--status", help="Show the logged-in account instead of logging in.")] = False,
    phone: Annotated[
        str | None, typer.Option("--phone", help="Phone number in international form; default CONTENTQ_TG_PHONE.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Log the Telegram account in (phone → code → 2FA password) and save its session (mode 0600)."""
    from contentq.integrations.telegram.client import load_session_string

    rt = runtime()
    settings = rt.settings
    if status:
        value, origin = load_session_string(settings)
        if value is None:
            raise ContentqError("no Telegram session: run `contentq login` (or set CONTENTQ_TG_SESSION)")
        gateway = gateway_of(rt)
        try:
            gateway.ensure_ready()
            account = gateway.account()
        except ConnectionError as exc:
            raise ContentqError(
                f"cannot reach Telegram ({exc}); check the network (or a proxy/firewall), then run it again"
            ) from None
        info = {
            "id": account.id, "username": account.username, "name": account.name, "phone": _masked(account.phone),
            "premium": account.premium, "session": origin, "device_model": settings.tg_device_model,
        }  # fmt: skip
        if as_json:
            print_json(info)
        else:
            details(info, title="Telegram account")
        return
    from contentq.integrations.telegram.login import login as do_login

    number = phone or settings.tg_phone or typer.prompt("Phone number (international form, e.g. +15551234567)")
    account = do_login(
        settings,
        number.strip(),
        ask_code=lambda: typer.prompt("Code sent by Telegram"),
        ask_password=lambda: typer.prompt("Two-step verification password", hide_input=True),
    )
    ok(f"logged in as {account.name} (@{account.username or '—'}); session saved to {settings.session_path}")
    if settings.tg_session is not None:
        err_console.print("[yellow]note:[/yellow] CONTENTQ_TG_SESSION is set and wins over the saved file")


# -- sources -----------------------------------------------------------------------------------------


@sources_app.command("list")
def sources_list(as_json: JsonOpt = False, wide: WideOpt = False) -> None:
    """Donor channels with their last run, counts, last error and title (--wide adds route, id and cursor)."""
    rows = list_sources(runtime())
    if as_json:
        print_json(rows)
        return
    table(
        rows,
        # Text columns give way from the right: the title before the error.
        ["source", Col("route", wide=True), Col("id", wide=True), Col("last_message_id", "cursor", wide=True),
         "last_run", "collected", ("duplicates", "dups"), "filtered", Col("error", fit="ellipsis"),
         Col("title", fit="ellipsis")],
        title="sources", empty="no sources: add `sources = [...]` to a route in contentq.toml", wide=wide,
    )  # fmt: skip


@sources_app.command("resolve")
def sources_resolve(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to resolve (default: every source).")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Resolve again even when cached.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resolve donor channels once through Telegram and cache their id and access hash."""
    rt = runtime()
    refs = _selected_sources(rt, sources)
    gateway = gateway_of(rt)
    gateway.ensure_ready()
    rows = []
    for ref in refs:
        channel = resolve_channel(rt.store, gateway, ref, refresh=refresh)
        rows.append({"source": ref, "id": channel.id, "title": channel.title, "access_hash": channel.access_hash})
    if as_json:
        print_json(rows)
        return
    table(rows, ["source", "id", "title"], title="resolved")


# -- collect -----------------------------------------------------------------------------------------


def _selected_sources(rt: Runtime, given: list[str] | None) -> list[str]:
    routes = load_routes(rt.settings.config_path)
    known = list(dict.fromkeys(ref for ref, _ in routes.sources()))
    if not given:
        if not known:
            raise ContentqError(f"no sources in {rt.settings.config_path}: add `sources = [...]` to a route")
        return known
    refs = [normalize_channel_ref(s) for s in given]
    unknown = [r for r in refs if r not in known]
    if unknown:
        raise ContentqError(
            f"not a source of any route: {', '.join(unknown)} (sources: {', '.join(known) or 'none'}); "
            f"add it to a route in {rt.settings.config_path}"
        )
    return refs


def collect(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources to collect (default: every source).")] = None,
    now: Annotated[bool, typer.Option("--now", help="Collect here in the foreground, with a progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue one collect job per donor channel (cron runs this), or collect right away with --now."""
    from contentq.intake.collect import CollectFailed, ForegroundContext, check_session, collect_source
    from contentq.intake.ingest import Counts

    rt = runtime()
    refs = _selected_sources(rt, sources)
    if not now:
        jobs = [enqueue(rt, "collect", ref, {"source": ref}) for ref in refs]
        rows = [{"source": r, "job": j["id"], "status": j["status"], "already": bool(j.get("deduplicated"))}
                for r, j in zip(refs, jobs, strict=True)]  # fmt: skip
        if as_json:
            print_json(rows)
        else:
            table(rows, ["source", "job", "status", ("already", "already queued")], title="collect jobs")
        return
    try:  # before any progress bar: without a session, its error is all there is to show
        check_session(ForegroundContext(rt), gateway_of(rt), ", ".join(refs), Counts())
    except CollectFailed as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    results, failed = [], 0
    reports = []
    for ref in refs:
        ctx = ForegroundContext(rt)
        try:
            with progress_bar(f"collect {ref}") as update:
                report = collect_source(ctx, ref, progress=update)
        except Reschedule as outcome:
            job = enqueue(rt, "collect", ref, {"source": ref}, delay=outcome.delay)
            error(f"{outcome.reason}; job {job['id']} resumes in {outcome.delay:.0f} s")
            failed += 1
            continue
        except CollectFailed as exc:
            error(str(exc))
            failed += 1
            continue
        results.append(report.as_dict())
        reports.append(report)
    if as_json:
        print_json(results)
    else:  # every source failed: the errors above are the output
        from contentq.intake.ingest import plural

        for report in reports:
            summary(f"collected {report.source}: {plural(report.fetched, 'message')} fetched, cursor {report.cursor}",
                    report.lines())  # fmt: skip
    if failed:
        raise typer.Exit(1)


# -- import ------------------------------------------------------------------------------------------


def import_(
    path: Annotated[Path, typer.Argument(help="result.json of a Telegram Desktop channel export (or its folder).")],
    source: Annotated[str, typer.Option("--source", help="The donor channel the export is from, e.g. @donor.")],
    route: Annotated[
        str | None, typer.Option("--route", help="Route to import into (default: the route of --source).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a channel export through dedup and filters; all or nothing. Accepted posts go to rewrite."""
    from contentq.intake.collect import ForegroundContext
    from contentq.intake.imports import import_export
    from contentq.intake.ingest import plural

    rt = runtime()
    ctx = ForegroundContext(rt)
    with progress_bar(f"import {path.name}") as update:
        report = import_export(ctx, path, source, route_name=route, progress=update)
    if as_json:
        print_json(report.as_dict())
        return
    summary(
        f"imported {path} as {report.source} into route {report.route}: {plural(report.messages, 'message')}, "
        f"{plural(report.posts, 'post')}", report.lines(),
    )  # fmt: skip
