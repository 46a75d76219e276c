"""`contentq db`: schema migrations, backups, restore and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import JsonOpt, WideOpt, runtime
from contentq.cli.render import Col, ColumnSpec, ok, print_json, probe_table, table
from contentq.media import human_bytes
from contentq.ops.backup import check as check_core
from contentq.ops.backup import make_backup
from contentq.ops.probe import FAIL
from contentq.store.db import open_store
from contentq.store.migrations import apply_migrations, migration_status

app = typer_app(help="The SQLite database: migrations, backups, restore, checks.", no_args_is_help=True)


@app.command()
def migrate(
    list_only: Annotated[bool, typer.Option("--list", help="List migrations and whether they are applied.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    wide: WideOpt = False,
) -> None:
    """Apply pending schema migrations (opening the database does this too)."""
    settings = runtime().settings
    settings.ensure_home()
    store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False)
    try:
        if list_only:
            rows = migration_status(store.db)
            if as_json:
                print_json(rows)
            else:
                columns: list[ColumnSpec] = ["number", ("applied_at", "applied"), Col("name", fit="ellipsis")]
                table(rows, columns, title=str(settings.db_path), wide=wide)
            return
        with store.translate_errors():
            done = apply_migrations(store.db)
        ok(f"applied {len(done)} migration(s) to {settings.db_path}" if done else "the database is up to date")
    finally:
        store.close()


@app.command()
def backup(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A folder (the file is named by its time) or a file name ending in .gz; default: "
            "CONTENTQ_BACKUP_DIR, else CONTENTQ_HOME/backups."
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            min=0,
            max=3650,
            help="Keep the newest backup of each of the last N days (default CONTENTQ_BACKUP_KEEP_DAILY, 7).",
        ),
    ] = None,
    keep_weekly: Annotated[
        int | None,
        typer.Option(
            "--keep-weekly",
            min=0,
            max=520,
            help="…and of each of the last N ISO weeks (default CONTENTQ_BACKUP_KEEP_WEEKLY, 4).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the live database (workers may run), verify the copy, gzip it (mode 0600) and rotate old backups."""
    result = make_backup(runtime().settings, path, keep_daily=keep, keep_weekly=keep_weekly)
    if as_json:
        print_json(result.as_dict())
        return
    rows = ", ".join(f"{n} {t}" for t, n in result.row_counts.items())
    ok(
        f"backup {result.path}: {human_bytes(result.size_bytes)} (database {human_bytes(result.db_bytes)}) in "
        f"{result.seconds:.1f} s; integrity_check ok; {rows}"
    )
    if result.removed:
        typer.echo(f"rotated away {len(result.removed)}: " + ", ".join(p.name for p in result.removed))
    typer.echo(f"kept {len(result.kept)} backup(s) in {result.path.parent}")


@app.command()
def restore(
    path: Annotated[Path, typer.Argument(help="A backup made by `db backup` (.gz), or a plain SQLite file.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    no_reconcile: Annotated[
        bool, typer.Option("--no-reconcile", help="Skip `queue reconcile` afterwards (run it yourself).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put a backup in place of the database (the current file is kept), then reconcile Redis with it.

    Refused while workers or listeners run. Stop every contentq program first: supervisorctl stop 'contentq:*'.
    """
    from contentq.ops.restore import restore as restore_core  # RQ and the reconcile: only for this command

    settings = runtime().settings  # settings only: the database must not be open in this process
    if not yes:
        typer.confirm(f"Replace {settings.db_path} with {path}? (the current file is kept beside it)", abort=True)
    result = restore_core(settings, path, run_reconcile=not no_reconcile)
    if as_json:
        print_json(result.as_dict())
        return
    rows = ", ".join(f"{n} {t}" for t, n in result.counts.items())
    ok(f"restored {result.database} from {result.source} ({rows})")
    if result.replaced:
        typer.echo(f"the database it replaced is kept as {result.replaced}")
    if no_reconcile:
        typer.echo("now run `contentq queue reconcile`, then start the workers")
    elif result.reconcile_error:
        typer.echo(f"warning: reconcile did not run: {result.reconcile_error}", err=True)
    else:
        typer.echo(f"reconcile: {len(result.reconciled)} job(s) re-enqueued or settled; start the workers now")


@app.command()
def check(
    quick: Annotated[bool, typer.Option("--quick", help="quick_check instead of the full integrity_check.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Integrity check, WAL size, the last good backup's age and free disk space; exits 1 when a check fails."""
    probes = check_core(runtime().settings, quick=quick)
    if as_json:
        print_json([p.as_dict() for p in probes])
    else:
        probe_table(probes, "contentq db check")
    if any(p.status == FAIL for p in probes):
        raise typer.Exit(1)
