"""`contentq doctor` (every part of the installation, with the fix for what is wrong) and `contentq health`
(a quick probe for monitoring: exits non-zero when Redis, the database or the workers are not there)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from contentq.errors import ContentqError
from contentq.ops import supervisor as sv
from contentq.ops.backup import doctor_probe as backup_probe
from contentq.ops.probe import FAIL, OK, SKIP, WARN, Probe
from contentq.redact import redact
from contentq.routes import RoutesConfig, load_routes
from contentq.runtime.liveness import alive_workers, dead_registrations, missing_queues
from contentq.runtime.redis import connect, describe_redis, embedded_server
from contentq.settings import Settings, load_settings
from contentq.store.db import open_store
from contentq.store.migrations import migration_status

SUPERVISOR_CANDIDATES = (
    "/etc/supervisor/conf.d/contentq.conf",
    "/etc/supervisord.d/contentq.ini",
    "/etc/supervisord.d/contentq.conf",
    "/etc/supervisor.d/contentq.ini",
)
"""Where supervisor configs usually live (Debian, RHEL, Arch); CONTENTQ_HOME/supervisor/contentq.conf first."""

CRON_CANDIDATES = ("/etc/cron.d/contentq*",)
CRON_COMMANDS = ("collect", "dispatch", "reconcile", "purge", "alerts", "insights fetch", "db backup")
"""What crontab.example schedules: a crontab without one of them is reported."""

MIN_FREE_BYTES = 1 << 30


def _routes(settings: Settings) -> RoutesConfig | None:
    try:
        return load_routes(settings.config_path)
    except ContentqError:
        return None


def check_config(settings: Settings) -> tuple[Probe, RoutesConfig | None]:
    path = settings.config_path
    if not path.exists() and settings.config is not None:  # a file named with --config / CONTENTQ_CONFIG
        return (
            Probe("config", FAIL, f"{path}: no such file (given with --config or CONTENTQ_CONFIG)",
                  f"give the path of your routes file, or leave --config out to use {settings.home / 'contentq.toml'}"),
            None,
        )  # fmt: skip
    if not path.exists():
        home_file = settings.home / "contentq.toml"
        return (
            Probe("config", WARN, f"settings valid; no routes file: neither {home_file} nor ./contentq.toml exists",
                  f"write your routes to {home_file} (see the README), or try `contentq demo`"),
            None,
        )  # fmt: skip
    try:
        routes = load_routes(path)
    except ContentqError as exc:
        return Probe("config", FAIL, str(exc), f"fix {path}: the message names the route and field"), None
    names = ", ".join(sorted(routes.routes)) or "none"
    return Probe("config", OK, f"settings valid; {path}: {len(routes.routes)} route(s): {names}"), routes


def check_home(settings: Settings) -> Probe:
    home = settings.home
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return Probe("data directory", FAIL, f"{home}: {exc.strerror}", "set CONTENTQ_HOME to a writable directory")
    if not os.access(home, os.W_OK):
        return Probe("data directory", FAIL, f"{home} is not writable", f"chown/chmod {home}, or set CONTENTQ_HOME")
    free = shutil.disk_usage(home).free
    if free < MIN_FREE_BYTES:
        return Probe("data directory", WARN, f"{home}: only {free / 1e9:.2f} GB free",
                     "free disk space or run `contentq purge`")  # fmt: skip
    return Probe("data directory", OK, f"{home} ({free / 1e9:.1f} GB free)")


def _loose(path: Path) -> bool:
    """Readable or writable by the group or others (a symlink's target counts)."""
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False


def check_permissions(settings: Settings) -> Probe:
    """Secrets and data must be private: `.env` (keys), the home with the database, the session and the AOF."""
    env_files = [settings.home / ".env", Path(".env").resolve()]
    loose_env = [p for p in dict.fromkeys(env_files) if p.is_file() and _loose(p)]
    private = [settings.home, settings.db_path, settings.session_path, settings.redis_dir, settings.bot_session_path,
               settings.home / "bot.key"]  # fmt: skip
    loose = [p for p in private if p.exists() and _loose(p)]
    if loose_env:
        names = " ".join(str(p) for p in loose_env)
        return Probe("permissions", WARN, f"{names}: readable by other users, and it holds secrets",
                     f"chmod 600 {names}")  # fmt: skip
    if loose:
        names = " ".join(str(p) for p in loose)
        return Probe("permissions", WARN, f"readable by other users: {names}",
                     f"chmod -R go-rwx {settings.home} (contentq creates new files private)")  # fmt: skip
    return Probe("permissions", OK, "data directory and .env are private to their owner")


def check_database(settings: Settings) -> Probe:
    if not settings.db_path.exists():  # a check must not create what it checks
        return Probe("database", WARN, f"{settings.db_path} does not exist yet",
                     "it is created by the first command that needs it, e.g. `contentq db migrate`")  # fmt: skip
    try:
        # Not migrated on open: pending migrations are what this check reports.
        store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False)
    except ContentqError as exc:
        return Probe("database", FAIL, str(exc), "check CONTENTQ_HOME and the file's permissions")
    except Exception as exc:  # a corrupt file raises sqlite3.DatabaseError
        return Probe("database", FAIL, f"{settings.db_path}: {exc}",
                     "restore the database from a backup, or move it away to start afresh")  # fmt: skip
    try:
        pending = [m for m in migration_status(store.db) if not m["applied_at"]]
        with store.transaction():
            pass  # takes and releases the write lock: not locked by a stuck process
        posts = store.scalar("SELECT COUNT(*) FROM posts")
        if pending:
            return Probe("database", FAIL, f"{len(pending)} migration(s) pending", "run `contentq db migrate`")
        return Probe("database", OK, f"{settings.db_path} ({posts} posts)")
    except ContentqError as exc:
        return Probe("database", FAIL, str(exc), "find the process holding the database (`fuser contentq.db`)")
    finally:
        store.close()


def server_version(info: dict[str, Any]) -> str:
    """The server's own name and version: Valkey reports `redis_version` 7.2.4 (the Redis it is compatible with)
    whatever its release, and its real version in `valkey_version`."""
    if info.get("valkey_version"):
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info.get('redis_version', '?')}"


def check_redis(settings: Settings) -> tuple[Probe, redis.Redis | None]:
    if not settings.redis_url and not embedded_server(settings).ping():
        # Not a failure: every command that needs it starts it (and supervisor runs it in production).
        socket = embedded_server(settings).socket
        detail = f"the embedded Valkey is not running ({socket}); the next command that needs it starts it"
        return Probe("redis", WARN, detail, "`contentq redis start` starts it now"), None
    try:
        conn = connect(settings, start_embedded=False)
        version = server_version(conn.info("server"))
    except (ContentqError, redis.RedisError) as exc:
        fix = (
            "start Redis or fix CONTENTQ_REDIS_URL (unset it to use the embedded server)"
            if settings.redis_url
            else "run `contentq redis start`, or start supervisor (it runs the embedded Valkey)"
        )
        detail = redact(exc)
        if isinstance(exc, ContentqError):  # its message ends with "; <what to do>": say that once, as the fix
            detail = detail.rpartition("; ")[0] or detail
        return Probe("redis", FAIL, detail, fix), None
    return Probe("redis", OK, f"{describe_redis(settings)} ({version})"), conn


def _live_workers(settings: Settings, conn: redis.Redis | None = None) -> tuple[list[dict[str, Any]], int] | None:
    """The live workers by their heartbeats in SQLite, and (given Redis) how many dead ones Redis still lists;
    None when there is no database to read them from."""
    if not settings.db_path.exists():
        return None
    try:
        store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False)
    except Exception:  # noqa: BLE001 - the database check reports why
        return None
    try:
        live = alive_workers(store, settings.worker_heartbeat_ttl)
        dead = 0
        if conn is not None:
            with contextlib.suppress(redis.RedisError):  # the Redis check says why
                dead = len(dead_registrations(store, conn, settings.worker_heartbeat_ttl))
        return live, dead
    finally:
        store.close()


START_WORKERS = "start them: `supervisorctl start 'contentq:*'` (or `contentq worker` in a terminal)"


def check_workers(settings: Settings, conn: redis.Redis | None) -> Probe:
    """Live workers by contentq's own heartbeats (dead after CONTENTQ_WORKER_HEARTBEAT_TTL), not by RQ's list,
    which keeps a killed worker for 8 minutes."""
    if conn is None:
        return Probe("workers", SKIP, "Redis is not reachable")
    found = _live_workers(settings, conn)
    if found is None:
        return Probe("workers", WARN, "no worker has run yet (no database)", START_WORKERS)
    live, dead = found
    who = "the live workers remove them within a minute" if live else "`contentq queue reconcile` removes them"
    stale = f"; Redis still lists {dead} dead one(s) ({who})" if dead else ""
    missing = missing_queues(live)
    if not live:
        return Probe("workers", WARN, f"no worker is running{stale}", START_WORKERS)
    if missing:
        return Probe("workers", WARN, f"{len(live)} live worker(s); none on {', '.join(missing)}{stale}",
                     "check `supervisorctl status 'contentq:*'`")  # fmt: skip
    return Probe("workers", OK, f"{len(live)} live worker(s) cover every queue{stale}")


def telegram_need(settings: Settings, routes: RoutesConfig | None) -> tuple[str, str]:
    """How much Telegram matters here, and why: FAIL-worthy when something is sent through it (a route with
    publisher "telegram", or admin notifications); WARN when routes only have sources, since `collect` needs it
    but imports and the outbox publisher do not (the demo's home, README steps 1-4); SKIP otherwise."""
    all_routes = list(routes.routes.values()) if routes else []
    publishing = [r.name for r in all_routes if r.publisher == "telegram"
                  and (not r.destinations or any(d.platform == "telegram" for d in r.destination_list))]  # fmt: skip
    if publishing:
        return FAIL, f"route(s) {', '.join(publishing)} publish to Telegram"
    if settings.tg_admin_chat:
        return FAIL, "CONTENTQ_TG_ADMIN_CHAT sends notifications through Telegram"
    collecting = [r.name for r in all_routes if r.sources]
    if collecting:
        return WARN, f"`contentq collect` needs it for the sources of {', '.join(collecting)} (imports do not)"
    return SKIP, "no route reads or publishes through Telegram"


def check_telegram(settings: Settings, routes: RoutesConfig | None) -> Probe:
    level, why = telegram_need(settings, routes)
    has_keys = settings.tg_api_id is not None and settings.tg_api_hash is not None
    session_file = settings.session_path
    has_session = settings.tg_session is not None or session_file.exists()
    if level == SKIP and not has_keys and not has_session:
        return Probe("telegram", SKIP, why)
    level = WARN if level == SKIP else level  # half set up though nothing needs it yet
    if not has_keys:
        return Probe("telegram", level, f"CONTENTQ_TG_API_ID / CONTENTQ_TG_API_HASH are not set; {why}",
                     "create an app at https://my.telegram.org and set both in .env")  # fmt: skip
    if not has_session:
        return Probe("telegram", level, f"no session ({session_file} is missing); {why}",
                     "run `contentq login` (or set CONTENTQ_TG_SESSION to a session string)")  # fmt: skip
    if settings.tg_session is None:
        mode = stat.S_IMODE(session_file.stat().st_mode)
        if mode & 0o077:
            return Probe("telegram", WARN, f"{session_file} is readable by others (mode {mode:o})",
                         f"chmod 600 {session_file}: the session is a login")  # fmt: skip
    where = "CONTENTQ_TG_SESSION" if settings.tg_session is not None else str(session_file)
    return Probe("telegram", OK, f"api id set; session from {where} (`contentq login --status` checks the account)")


def check_bot(settings: Settings) -> Probe | None:
    """The admin bot's settings (docs/bot.md); None when no bot token is set (no bot, nothing to check)."""
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        return None
    if not settings.bot_admin_ids:
        return Probe(
            "bot", FAIL, "CONTENTQ_BOT_TOKEN is set but CONTENTQ_BOT_ADMINS is empty: the bot obeys nobody",
            "set CONTENTQ_BOT_ADMINS to your Telegram user id (@userinfobot tells it), comma-separated",
        )  # fmt: skip
    if settings.tg_api_id is None or settings.tg_api_hash is None:
        return Probe("bot", FAIL, "the bot logs in through Telethon, which needs CONTENTQ_TG_API_ID and _API_HASH",
                     "create an application at https://my.telegram.org and put both in .env")  # fmt: skip
    where = f"group {settings.bot_chat}" if settings.bot_chat is not None else "each admin's private chat"
    admins = len(settings.bot_admin_ids)
    return Probe("bot", OK, f"{admins} admin{'s' if admins != 1 else ''}; cards and alerts to {where}")


def _needs_llm(routes: RoutesConfig | None) -> bool:
    if routes is None:
        return False
    for route in routes.routes.values():
        if route.rewriter == "llm" or route.generate is not None:
            return True
        if route.images != "none" and route.image_backend == "openai":
            return True
    return False


def check_llm(settings: Settings, routes: RoutesConfig | None, timeout: float = 5.0) -> Probe:
    needed = _needs_llm(routes)
    configured = settings.openai_api_key is not None or settings.openai_base_url is not None
    if not configured:
        if needed:
            return Probe("llm", FAIL, "a route rewrites with the LLM but no endpoint is configured",
                         "set CONTENTQ_OPENAI_API_KEY (and CONTENTQ_OPENAI_BASE_URL for another "
                         "OpenAI-compatible server), or use rewriter = \"clean\"")  # fmt: skip
        return Probe("llm", SKIP, "no route uses the LLM and no endpoint is configured")
    import openai

    from contentq.integrations.openai_client import openai_client, split_userinfo

    where = split_userinfo(settings.openai_base_url)[0] or "https://api.openai.com/v1"
    client = openai_client(settings, timeout=timeout, missing_key="no API key")  # the rewriter's exact client
    try:
        client.models.list()
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        return Probe("llm", FAIL, f"{where} refused the API key ({exc.status_code})",
                     "check CONTENTQ_OPENAI_API_KEY")  # fmt: skip
    except openai.NotFoundError:
        return Probe("llm", OK, f"{where} answers (it has no model list)")
    except openai.APIStatusError as exc:
        return Probe("llm", WARN, f"{where} answered HTTP {exc.status_code}", "check the endpoint's status")
    except openai.APIConnectionError as exc:
        return Probe("llm", FAIL, f"{where} unreachable within {timeout:g} s: {redact(exc)}",
                     "check CONTENTQ_OPENAI_BASE_URL and the network")  # fmt: skip
    finally:
        client.close()
    return Probe("llm", OK, f"{where} reachable (model {settings.openai_model})")


def find_supervisor_config(settings: Settings) -> Path | None:
    for candidate in (sv.default_output(settings), *map(Path, SUPERVISOR_CANDIDATES)):
        if candidate.exists():
            return candidate
    return None


def check_supervisor(settings: Settings, path: Path | None = None) -> Probe:
    found = path if path is not None else find_supervisor_config(settings)
    render_cmd = f"contentq supervisor render --output {sv.default_output(settings)}"
    if found is None or not found.exists():
        return Probe(
            "supervisor",
            WARN,
            "no supervisor config found for contentq",
            f"`{render_cmd}` and include it from supervisord.conf (or render to /etc/supervisor/conf.d/)",
        )
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as exc:
        return Probe("supervisor", FAIL, f"{found}: {exc.strerror}", f"make {found} readable")
    problems = sv.compare(text, settings)
    if problems:
        return Probe("supervisor", FAIL, f"{found} differs from the settings: " + "; ".join(problems[:3]),
                     f"re-render it (`contentq supervisor render --output {found}`), then "
                     "`supervisorctl reread && supervisorctl update`")  # fmt: skip
    return Probe("supervisor", OK, f"{found} matches the settings")


def _user_crontab() -> str:
    if shutil.which("crontab") is None:
        return ""
    try:
        result = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout if result.returncode == 0 else ""


def check_cron(read_user_crontab: Callable[[], str] = _user_crontab, extra_paths: tuple[str, ...] = ()) -> Probe:
    sources: list[tuple[str, str]] = []
    for pattern in (*CRON_CANDIDATES, *extra_paths):
        for path in sorted(glob.glob(pattern)):
            try:
                sources.append((path, Path(path).read_text(encoding="utf-8")))
            except OSError:
                continue
    sources.append(("the user crontab", read_user_crontab()))
    for where, text in sources:
        lines = [ln for ln in text.splitlines() if "contentq" in ln.lower() and not ln.lstrip().startswith("#")]
        if not lines:
            continue
        joined = "\n".join(lines)
        missing = [cmd for cmd in CRON_COMMANDS if cmd not in joined]
        if missing:
            return Probe("cron", WARN, f"{where} has contentq lines but none for: {', '.join(missing)}",
                         "compare it with crontab.example")  # fmt: skip
        return Probe("cron", OK, f"{where}: {', '.join(CRON_COMMANDS[:-1])} and {CRON_COMMANDS[-1]} are scheduled")
    return Probe(
        "cron",
        WARN,
        "no cron entries for contentq",
        "edit the paths in crontab.example, then `crontab crontab.example` (or copy it to /etc/cron.d/contentq)",
    )


def run_doctor(
    settings: Settings | None = None,
    *,
    supervisor_config: Path | None = None,
    llm_timeout: float = 5.0,
    read_user_crontab: Callable[[], str] = _user_crontab,
) -> list[Probe]:
    """Every check in order; nothing is started or changed."""
    if settings is None:
        try:
            settings = load_settings()
        except ContentqError as exc:
            return [Probe("config", FAIL, str(exc), "fix the CONTENTQ_* variable named in the message")]
    config, routes = check_config(settings)
    probes = [config, check_home(settings), check_permissions(settings), check_database(settings)]
    probes.append(backup_probe(settings))
    redis_probe, conn = check_redis(settings)
    probes += [redis_probe, check_workers(settings, conn)]
    probes.append(check_telegram(settings, routes))
    from contentq.ops.listening import check_listeners  # imports this module

    probes += check_listeners(settings, when_none=True)
    from contentq.ops.accounts_check import check_accounts  # Telethon's errors: only when the doctor runs

    probes += check_accounts(settings, routes)
    bot = check_bot(settings)
    probes += [bot] if bot is not None else []
    if conn is not None:
        from contentq.ops.bot_alive import bot_probe

        running = bot_probe(settings, conn)
        probes += [running] if running is not None else []
    probes.append(check_llm(settings, routes, llm_timeout))
    from contentq.ops.destinations_check import check_destinations

    probes += check_destinations(settings, routes)  # X and Instagram accounts, the public media URL
    probes.append(check_supervisor(settings, supervisor_config))
    probes.append(check_cron(read_user_crontab))
    if conn is not None:
        conn.close()
    return probes


def _probe_database(settings: Settings) -> Probe:
    if not settings.db_path.exists():
        return Probe("database", FAIL, f"no database at {settings.db_path}", "check CONTENTQ_HOME")
    try:
        store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False)
        try:
            store.scalar("SELECT COUNT(*) FROM sqlite_master")
            with store.transaction():
                pass  # the write lock can be had
        finally:
            store.close()
    except Exception as exc:
        return Probe("database", FAIL, redact(exc), "run `contentq doctor`")
    return Probe("database", OK, str(settings.db_path))


def _health_workers(settings: Settings, queues: list[str] | None) -> Probe:
    """Fails when a queue has no worker whose heartbeat in SQLite is younger than the TTL."""
    found = _live_workers(settings)
    live = found[0] if found else []
    missing = missing_queues(live, queues)
    ttl = settings.worker_heartbeat_ttl
    if missing:
        return Probe("workers", FAIL, f"no live worker on {', '.join(missing)} (none beat in the last {ttl} s)",
                     "supervisorctl status 'contentq:*'")  # fmt: skip
    return Probe("workers", OK, f"{len(live)} live worker(s)")


def run_health(settings: Settings, *, workers: bool = True, queues: list[str] | None = None) -> list[Probe]:
    """Redis answers, the database opens and is not locked, and (optionally) every queue has a live worker; then
    the listeners. Healthy when no probe fails (a warning is shown, not failed)."""
    redis_probe, conn = check_redis(settings)
    if redis_probe.status == WARN:  # the embedded Valkey not running: a failure for monitoring
        redis_probe = Probe(redis_probe.check, FAIL, redis_probe.detail, redis_probe.fix)
    probes = [redis_probe, _probe_database(settings)]
    if workers:
        if conn is None:
            probes.append(Probe("workers", FAIL, "Redis is not reachable"))
        else:
            probes.append(_health_workers(settings, queues))
    if conn is not None:
        from contentq.ops.bot_alive import bot_probe

        bot = bot_probe(settings, conn)  # with a bot token: the bot's heartbeat
        probes += [bot] if bot is not None else []
        conn.close()
    if probes[1].status == OK:  # the database opens: the listeners' heartbeats can be read
        from contentq.ops.listening import check_listeners

        # health fails on a listener that is not running or disconnected past CONTENTQ_LISTEN_ALERT_AFTER;
        # a short disconnect or a deliberate stop is shown, not failed; "not logged in" stays a warning (with
        # the fix), which does not fail health either: outbox routes and imports work without Telegram
        probes += [
            p if p.status != WARN or p.detail.startswith("not logged in") else Probe(p.check, OK, p.detail, p.fix)
            for p in check_listeners(settings)
        ]
        from contentq.ops.accounts_check import check_accounts

        # a Telegram account that is logged out or banned while routes use it fails health (they wait for it)
        probes += check_accounts(settings, _routes(settings), only_known=True)
    return probes
