"""`contentq`: the entry point. Global flags, sub-command groups, and one place that turns errors into a line."""

from __future__ import annotations

import os
import sqlite3
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contentq import __version__, actors
from contentq.cli import typer_app
from contentq.cli.lazy import LazyCommand, LazyGroup, reset_runtime
from contentq.clock import iso
from contentq.errors import ConfigError, ContentqError
from contentq.redact import redact

if TYPE_CHECKING:  # settings (pydantic-settings) load when a command runs, not for `contentq --help`
    from contentq.settings import Settings


class ContentqGroup(LazyGroup):
    # The order of `contentq --help`: commands, then groups. Each help is the first paragraph of the command's own.
    lazy_commands = {
        "worker": LazyCommand(
            "worker",
            "worker",
            "Run a worker: takes jobs from QUEUES in the order given (default: all, in priority order).",
        ),
        "login": LazyCommand(
            "collect",
            "login",
            "Log the Telegram account in (phone → code → 2FA password) and save its session (mode 0600).",
        ),
        "collect": LazyCommand(
            "collect",
            "collect",
            "Enqueue one collect job per donor channel (cron runs this), or collect right away with --now.",
        ),
        "import": LazyCommand(
            "collect",
            "import_",
            "Import a channel export through dedup and filters; all or nothing. Accepted posts go to rewrite.",
        ),
        "listen": LazyCommand(
            "listen",
            "listen",
            "Collect donor posts as they arrive (and follow their edits and deletions) until stopped (TERM, Ctrl-C).",
        ),
        "bot": LazyCommand(
            "bot",
            "bot",
            "Run the admin bot: approval cards, alerts with buttons and commands in Telegram, until stopped (TERM).",
        ),
        "unschedule": LazyCommand(
            "schedule",
            "unschedule",
            "Take a scheduled post off the schedule; it waits for `posts approve` or `schedule ID --at`.",
        ),
        "publish": LazyCommand(
            "publish",
            "publish",
            "Publish a post now, skipping its slot and approval (through the publish queue unless --now).",
        ),
        "dispatch": LazyCommand(
            "publish",
            "dispatch",
            "Hand due posts to the publish queue and fire due auto-posting rules (cron: every minute).",
        ),
        "rewrite": LazyCommand(
            "rewrite",
            "rewrite",
            "Enqueue rewrite jobs (collect does this by itself; use it after a fix, or for failed rewrites).",
        ),
        "usage": LazyCommand(
            "rewrite",
            "usage",
            "LLM and image API usage per day (UTC) and route: calls, tokens, cache hits, images, estimated cost.",
        ),
        "batches": LazyCommand(
            "rewrite",
            "batches",
            "Rewrite batches (OpenAI Batch API): status, posts answered, failed and rewritten directly.",
        ),
        "purge": LazyCommand(
            "ops", "purge", "Remove what is past retention, in small batches that never block the workers."
        ),
        "stats": LazyCommand(
            "ops",
            "stats",
            "Jobs per queue and kind (count, failures, durations, retries), posts per route and state, LLM usage.",
        ),
        "insights": LazyCommand(
            "insights",
            "app",
            "What published posts achieved: per target, donor, slot and rewrite, with suggestions (`insights fetch` "
            "from cron collects the figures).",
        ),
        "doctor": LazyCommand(
            "ops",
            "doctor",
            "Check the whole setup and print ok/warn/fail with the fix for each; exits 1 when a check fails.",
        ),
        "health": LazyCommand(
            "ops",
            "health",
            "Probe for monitoring: Redis, the database, the workers and the listeners; exits 1 when one is down.",
        ),
        "demo": LazyCommand(
            "ops", "demo", "Run the pipeline end to end with no credentials, publishing to the outbox folder."
        ),
        "queue": LazyCommand("queue", "app", "Queues: status, pause, resume, reconcile."),
        "jobs": LazyCommand("jobs", "app", "Jobs: list, show, logs, retry, cancel."),
        "db": LazyCommand("db", "app", "The SQLite database: migrations, backups, restore, checks."),
        "redis": LazyCommand(
            "redis_server", "app", "Manage the embedded Valkey server (used when CONTENTQ_REDIS_URL is unset)."
        ),
        "sources": LazyCommand("collect", "sources_app", "Donor channels: list, resolve."),
        "accounts": LazyCommand("accounts", "app", "Telegram accounts: add, login, list, set, remove."),
        "posts": LazyCommand(
            "posts", "app", "Posts: list, show, approve, reject, edit; the states a post goes through."
        ),
        "schedule": LazyCommand(
            "schedule", "app", "The publishing schedule: `schedule list`, `schedule POST_ID --at TIME`."
        ),
        "rules": LazyCommand("publish", "rules_app", "Auto-posting rules: routes with a generate section."),
        "images": LazyCommand(
            "images", "app", "Images of posts: generate (OpenAI or a local card), list, show, delete, prune."
        ),
        "supervisor": LazyCommand("ops", "supervisor_app", "Supervisor config for the workers."),
        "alerts": LazyCommand("ops", "alerts_app", "Alerts to the admin (run `alerts check` from cron)."),
        "notifications": LazyCommand(
            "notifications",
            "notifications",
            "Admin notifications sent, newest first: when, level, key, message; repeats held back within the throttle.",
        ),
        "metrics": LazyCommand("ops", "metrics_app", "Prometheus metrics: an HTTP endpoint or a textfile."),
        "web": LazyCommand(
            "web", "app", "The admin panel in the browser and the JSON API (`contentq web`; `contentq web token`)."
        ),
        "users": LazyCommand(
            "users", "app", "Panel users: add, passwd, list, remove, routes, role, token, sessions, logout."
        ),
        "audit": LazyCommand(
            "users", "audit", "What people did (panel, API, CLI, bot), newest first: when, who, on what, which action."
        ),
    }


app = typer_app(
    name="contentq",
    help="Collect, rewrite, schedule and publish Telegram channel posts, on RQ workers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=ContentqGroup,  # imports a command's module only when that command runs (or shows its own --help)
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
    actors.set_process_actor(actors.cli())  # what a command moves is recorded as this OS user's
    from contentq.logs import setup_logging
    from contentq.settings import get_settings, set_overrides

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
    from contentq.runtime.redis import embedded_server  # redis is imported only by a command that needs it

    server = embedded_server(settings)
    was_running = server.ping()

    def note() -> None:
        if not was_running and server.ping():
            from contentq.cli.render import err_console, plain

            err_console.print(
                f"[dim]note: the embedded Valkey started for this command keeps running in the background "
                f"({plain(server.socket)}); `contentq redis stop` stops it[/dim]",
                highlight=False,
                soft_wrap=True,
            )

    return note


_state: dict[str, bool] = {"debug": False}


def _log_crash(exc: BaseException) -> Path | None:
    """Append the redacted traceback to CONTENTQ_HOME/logs/contentq.log; the log file, or None if it cannot be
    written. Not through `logging`: its stderr handler would print the traceback the user must not get."""
    try:
        from contentq.settings import get_settings

        path = get_settings().home / "logs" / "contentq.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(sys.argv[1:])[:500]
        text = "".join(traceback.format_exception(exc))
        with path.open("a", encoding="utf-8", errors="replace") as log:
            log.write(redact(f"{iso()} ERROR contentq.cli: unexpected error in `contentq {command}`\n{text}"))
        return path
    except Exception:  # settings themselves may be what failed; the error line is still shown
        return None


def error(message: object) -> None:
    from contentq.cli.render import error as render_error  # rich loads only when there is something to print

    render_error(message)


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


def _redis_errors() -> tuple[type[Exception], ...]:
    """Redis's error class, for an `except` (evaluated only when an error gets there): none if no command has
    imported redis, which `contentq --help` and the commands that never talk to Redis do not."""
    module = sys.modules.get("redis")
    return (module.RedisError,) if module is not None else ()


def main() -> None:
    os.umask(PRIVATE_UMASK)
    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except ContentqError as exc:
        error(redact(exc))
        sys.exit(1)
    except _redis_errors() as exc:
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
