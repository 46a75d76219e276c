"""`contentq`: the entry point. Global flags, sub-command groups, and one place that turns errors into a line."""

from __future__ import annotations

import os
import sqlite3
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import redis
import typer

from contentq import __version__
from contentq.cli import collect as collect_cli
from contentq.cli import db as db_cli
from contentq.cli import images as images_cli
from contentq.cli import jobs as jobs_cli
from contentq.cli import listen as listen_cli
from contentq.cli import ops as ops_cli
from contentq.cli import posts as posts_cli
from contentq.cli import publish as publish_cli
from contentq.cli import queue as queue_cli
from contentq.cli import redis_server as redis_cli
from contentq.cli import rewrite as rewrite_cli
from contentq.cli import schedule as schedule_cli
from contentq.cli import web as web_cli
from contentq.cli import worker as worker_cli
from contentq.cli.common import reset_runtime
from contentq.cli.render import err_console, error, plain
from contentq.clock import iso
from contentq.errors import ConfigError, ContentqError
from contentq.logs import setup_logging
from contentq.redact import redact
from contentq.runtime.redis import embedded_server
from contentq.settings import Settings, get_settings, set_overrides

app = typer.Typer(
    name="contentq",
    help="Collect, rewrite, schedule and publish Telegram channel posts, on RQ workers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"contentq {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option("--home", help="Data directory (database, session, media, Redis).", envvar=None)
    ] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="Redis URL; default: embedded Valkey.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Routes file (contentq.toml).")] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="On an unexpected error, print its traceback (it is always logged).")
    ] = False,
) -> None:
    """Flags here win over CONTENTQ_* environment variables and .env."""
    _state["debug"] = debug
    set_overrides(home=str(home) if home else None, redis_url=redis_url, config=str(config) if config else None)
    reset_runtime()
    try:
        settings = get_settings()
        setup_logging(settings)
    except ContentqError:
        if ctx.invoked_subcommand != "doctor":  # doctor reports invalid settings as its first check
            raise
        return
    # A routes file named with --config / CONTENTQ_CONFIG must exist (doctor reports it; demo writes it).
    if settings.config is not None and ctx.invoked_subcommand not in ("doctor", "demo"):
        path = settings.config_path
        if not path.exists():
            raise ConfigError(f"{path}: no such file; give the path of your routes file (contentq.toml) to --config")
    if not settings.redis_url and ctx.invoked_subcommand != "redis":
        ctx.call_on_close(_note_embedded_start(settings))


def _note_embedded_start(settings: Settings) -> Callable[[], None]:
    """Say so when this command started the embedded Valkey: it keeps running for the next commands."""
    server = embedded_server(settings)
    was_running = server.ping()

    def note() -> None:
        if not was_running and server.ping():
            err_console.print(
                f"[dim]note: the embedded Valkey started for this command keeps running in the background "
                f"({plain(server.socket)}); `contentq redis stop` stops it[/dim]",
                highlight=False,
                soft_wrap=True,
            )

    return note


app.command(name="worker")(worker_cli.worker)
app.add_typer(queue_cli.app, name="queue")
app.add_typer(jobs_cli.app, name="jobs")
app.add_typer(db_cli.app, name="db")
app.add_typer(redis_cli.app, name="redis")
app.command(name="login")(collect_cli.login)
app.add_typer(collect_cli.sources_app, name="sources")
app.command(name="collect")(collect_cli.collect)
app.command(name="import")(collect_cli.import_)
app.command(name="listen")(listen_cli.listen)
app.add_typer(posts_cli.app, name="posts")
app.add_typer(schedule_cli.app, name="schedule")
app.command(name="unschedule")(schedule_cli.unschedule)
app.command(name="publish")(publish_cli.publish)
app.command(name="dispatch")(publish_cli.dispatch)
app.add_typer(publish_cli.rules_app, name="rules")
app.add_typer(images_cli.app, name="images")
app.command(name="rewrite")(rewrite_cli.rewrite)
app.command(name="usage")(rewrite_cli.usage)
app.add_typer(ops_cli.supervisor_app, name="supervisor")
app.add_typer(ops_cli.alerts_app, name="alerts")
app.add_typer(ops_cli.metrics_app, name="metrics")
app.command(name="purge")(ops_cli.purge)
app.command(name="stats")(ops_cli.stats)
app.command(name="doctor")(ops_cli.doctor)
app.command(name="health")(ops_cli.health)
app.command(name="demo")(ops_cli.demo)
app.add_typer(web_cli.app, name="web")


_state: dict[str, bool] = {"debug": False}


def _log_crash(exc: BaseException) -> Path | None:
    """Append the redacted traceback to CONTENTQ_HOME/logs/contentq.log; the log file, or None if it cannot be
    written. Not through `logging`: its stderr handler would print the traceback the user must not get."""
    try:
        path = get_settings().home / "logs" / "contentq.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(sys.argv[1:])[:500]
        text = "".join(traceback.format_exception(exc))
        with path.open("a", encoding="utf-8", errors="replace") as log:
            log.write(redact(f"{iso()} ERROR contentq.cli: unexpected error in `contentq {command}`\n{text}"))
        return path
    except Exception:  # settings themselves may be what failed; the error line is still shown
        return None


def unexpected(exc: BaseException) -> None:
    """An exception no code path expected: one `error:` line; the traceback goes to the log (and --debug)."""
    where = _log_crash(exc)
    if _state["debug"]:
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    detail = str(exc).splitlines()[0][:300] if str(exc) else ""
    hint = f"the traceback is in {where}" if where else "run again with --debug for the traceback"
    error(redact(f"unexpected {type(exc).__name__}" + (f": {detail}" if detail else "") + f"; {hint}"))


PRIVATE_UMASK = 0o077
"""Whatever contentq creates is its user's alone: the database (and -wal/-shm), Valkey's AOF, logs, the session,
media and the outbox. Set once here, the entry point of every contentq process (workers and the embedded Valkey
are started through it or by it and inherit it), instead of a chmod after each of the many places that create files.
Files meant for other users (`metrics dump` for node_exporter) set their mode explicitly."""


def main() -> None:
    os.umask(PRIVATE_UMASK)
    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except ContentqError as exc:
        error(redact(exc))
        sys.exit(1)
    except redis.RedisError as exc:
        error(f"Redis error: {redact(exc)}; check that Redis is running (`contentq queue status`)")
        sys.exit(1)
    except sqlite3.Error as exc:
        error(f"database error: {exc}; run `contentq doctor` to check the database")
        sys.exit(1)
    except ConnectionError as exc:  # Telegram or the LLM endpoint unreachable where no caller expected it
        error(redact(f"connection failed: {exc}; check the network and try again"))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        error("aborted")
        sys.exit(1)
    except Exception as exc:  # usage errors (typer vendors its own click: duck-typed) and the unexpected
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        unexpected(exc)
        sys.exit(1)
    finally:
        reset_runtime()
