"""`contentq db`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import WideOpt, runtime
from contentq.cli.render import Col, ColumnSpec, ok, print_json, table
from contentq.store.db import open_store
from contentq.store.migrations import apply_migrations, migration_status

app = typer_app(help="The SQLite database.", no_args_is_help=True)


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
