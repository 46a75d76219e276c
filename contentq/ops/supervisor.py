"""The supervisor programs that keep contentq's workers (and the embedded Valkey) alive, rendered from settings.

One `[group:contentq]` holds one program per worker group. Telegram-bound queues (publish, collect) share one
program with a single process: a Telegram session must not be used by two processes at once. In the compact
layout (CONTENTQ_PROCESS_LAYOUT, the default) that worker also hosts the listeners and the admin bot
(`worker --host listen,bot`), and rewrite, imagegen and maintenance share one program; the spread layout runs
`contentq-listen`, `contentq-bot`, `contentq-rewrite` and `contentq-light` (imagegen and maintenance). The other
programs get `numprocs` from the concurrency settings of their queues. With CONTENTQ_REDIS_URL unset, the
embedded Valkey is a program outside that group (a group of its own) with a lower priority: supervisor starts
it first and, on `shutdown`, stops it after the whole contentq group; on `stop all`, which signals every program
at once, its keeper (`contentq.runtime.valkey_keeper`, standard library only) keeps Valkey up until the workers
have unregistered. The workers are pointed at its socket so that they never start a second server themselves.
"""

from __future__ import annotations

import configparser
import hashlib
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from contentq.errors import ContentqError
from contentq.ops import litestream
from contentq.ops.output_file import write_file
from contentq.routes import load_routes
from contentq.runtime.redis import embedded_server
from contentq.settings import Settings

GROUP = "contentq"
"""The supervisor group: `supervisorctl status 'contentq:*'`."""

TELEGRAM_QUEUES = ("publish", "collect")
"""Queues whose jobs use the Telegram session: one process for all of them."""

LIGHT_QUEUES = ("imagegen", "maintenance")
"""spread: queues with few, short jobs: one program serves them all. A process of its own for each cost about
45 MiB (PSS) and its idle wake-ups for a queue that sees a handful of jobs a day (docs/performance.md, "Footprint")."""

WORK_QUEUES = ("maintenance", "rewrite", "imagegen")
"""compact: every queue that needs no Telegram session in one program. A free process takes the first non-empty
queue in this order (RQ's multi-queue pop), so maintenance comes first: its few short jobs never wait behind a
backlog of rewrites or images, only for a job already running (RQ does not preempt one). Rewrite (high priority)
before imagegen (low): an image follows its rewrite anyway."""

STOP_GRACE_SECONDS = 30
"""stopwaitsecs is the group's longest job timeout plus this: a warm shutdown lets the running job finish."""

START_SECONDS = 3
"""A program up this long is RUNNING: a worker waits for Redis instead of exiting, so an outage of any length
never turns into start failures."""

START_RETRIES = 100
"""Quick exits tolerated before supervisor gives up (FATAL); supervisor waits one second longer after each,
so 100 tries span more than an hour: a Valkey that cannot start at once (a disk full, a slow AOF) comes back."""

REDIS_PRIORITY = 100
LITESTREAM_PRIORITY = 150

REDIS_PROGRAM = f"{GROUP}-redis"
"""The embedded Valkey: not in the contentq group (`supervisorctl status contentq-redis`)."""
WORKER_PRIORITY = 200
WEB_PRIORITY = 300
WEB_PROGRAM = f"{GROUP}-web"
"""The admin panel (`contentq web`, 127.0.0.1:8700 by default); it starts after Redis and the workers."""


@dataclass(frozen=True)
class WorkerGroup:
    name: str
    queues: tuple[str, ...]
    numprocs: int
    stopwaitsecs: int
    note: str = ""
    host: tuple[str, ...] = ()
    """What the worker also runs (`contentq worker --host`): the listeners and the bot in the compact layout."""

    @property
    def program(self) -> str:
        return f"{GROUP}-{self.name}"


def worker_groups(settings: Settings) -> list[WorkerGroup]:
    """The worker programs, highest-priority queues first."""
    wanted = max(settings.policy(q).concurrency for q in TELEGRAM_QUEUES)
    note = "publish and collect share the Telegram session: one process"
    if wanted > 1:
        note += f" (the configured concurrency {wanted} does not apply: one session, one process)"
    host = hosted_programs(settings)
    if host:
        note += f"; it also runs {' and '.join(HOSTED_NOTES[h] for h in host)} (CONTENTQ_PROCESS_LAYOUT=compact)"
    groups = [
        WorkerGroup(
            "telegram",
            TELEGRAM_QUEUES,
            1,
            max(settings.policy(q).timeout for q in TELEGRAM_QUEUES) + STOP_GRACE_SECONDS,
            note,
            host,
        )
    ]
    if settings.process_layout == "compact":
        groups.append(_shared_group(settings, "work", WORK_QUEUES, "CONTENTQ_PROCESS_LAYOUT=compact: "))
        return groups
    rewrite = settings.policy("rewrite")
    groups.append(WorkerGroup("rewrite", ("rewrite",), rewrite.concurrency, rewrite.timeout + STOP_GRACE_SECONDS))
    groups.append(_shared_group(settings, "light", LIGHT_QUEUES, "", "(few, short jobs) "))
    return groups


def _shared_group(settings: Settings, name: str, queues: tuple[str, ...], lead: str, why: str = "") -> WorkerGroup:
    """One program for several queues: numprocs is the largest of their concurrencies, and a stop waits for the
    longest of their jobs."""
    policies = [settings.policy(q) for q in queues]
    listed = ", ".join(queues[:-1]) + f" and {queues[-1]}"
    return WorkerGroup(
        name,
        queues,
        max(p.concurrency for p in policies),
        max(p.timeout for p in policies) + STOP_GRACE_SECONDS,
        f"{lead}{listed} {why}share a program: numprocs is the largest of "
        + ", ".join(f"CONTENTQ_{q.upper()}_CONCURRENCY" for q in queues),
    )


def stop_grace(settings: Settings, groups: list[WorkerGroup] | None = None) -> int:
    """The longest supervisor waits for a worker to stop (its stopwaitsecs): Valkey waits no longer for them."""
    return max(group.stopwaitsecs for group in (worker_groups(settings) if groups is None else groups))


def keeper_command(exe: str, settings: Settings, groups: list[WorkerGroup]) -> list[str]:
    """The Valkey keeper (contentq.runtime.valkey_keeper) with what it would otherwise read from the settings:
    it imports the standard library only."""
    command = [exe, "-m", "contentq.runtime.valkey_keeper", one_line("CONTENTQ_HOME", str(settings.redis_dir))]
    command += ["--grace", str(stop_grace(settings, groups))]
    return command + (["--log-format", "json"] if settings.log_format == "json" else [])


def uses_embedded_redis(settings: Settings) -> bool:
    return not settings.redis_url


def logs_dir(settings: Settings) -> Path:
    return settings.home / "logs"


def supervisor_dir(settings: Settings) -> Path:
    return settings.home / "supervisor"


def default_output(settings: Settings) -> Path:
    """Where `supervisor render --output` writes when given a directory-less default, and where doctor looks first."""
    return supervisor_dir(settings) / "contentq.conf"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(what: str, value: str) -> str:
    """A value written into the config: a newline would start a new `[program:…]` section, a control character
    has no business there."""
    if _CONTROL.search(value):
        raise ContentqError(f"{what}: a newline or control character cannot go into a supervisor config")
    return value


def _quote_env(key: str, value: str) -> str:
    """`KEY="value"` as supervisor's own parser reads it back: it splits with shlex (no backslash escapes), strips
    quote characters at both ends, drops what follows ' ;' or ' #' as a comment and expands %(name)s."""
    if not _ENV_NAME.fullmatch(key):
        raise ContentqError(f"--env {key!r}: a variable name is letters, digits and '_' (not starting with a digit)")
    one_line(f"--env {key}", value)
    quote_at_end = bool(value) and (value[0] in "'\"" or value[-1] in "'\"")
    if re.search(r"\s[;#]", value) or quote_at_end:
        raise ContentqError(
            f"--env {key}: supervisor cannot read this value back (a ' ;' or ' #', or a quote at either end); "
            f"put it in {'CONTENTQ_HOME/.env' if key.startswith('CONTENTQ_') else 'a file the program reads'}"
        )
    quote = '"' if '"' not in value else "'"
    if quote in value:
        raise ContentqError(f"--env {key}: a value with both ' and \" cannot be written for supervisor")
    return f"{key}={quote}{value.replace('%', '%%')}{quote}"  # supervisor expands %(name)s: a literal % is %%


def _has_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return True


def _environment(settings: Settings, *, worker: bool, extra_env: dict[str, str]) -> tuple[str, list[str]]:
    env: dict[str, str] = {"CONTENTQ_HOME": str(settings.home)}
    notes: list[str] = []
    if settings.config is not None:
        env["CONTENTQ_CONFIG"] = str(settings.config.expanduser().resolve())
    if settings.redis_url:
        if _has_password(settings.redis_url):
            notes.append(
                f"CONTENTQ_REDIS_URL holds a password and is kept out of this file: put it in {settings.home / '.env'}"
            )
        else:
            env["CONTENTQ_REDIS_URL"] = settings.redis_url
    elif worker:
        # Workers talk to the supervised Valkey and never start one of their own.
        env["CONTENTQ_REDIS_URL"] = embedded_server(settings).url
    env.update(extra_env)
    return ",".join(_quote_env(k, v) for k, v in env.items()), notes


def _program(
    name: str,
    command: list[str],
    settings: Settings,
    *,
    priority: int,
    stopwaitsecs: int,
    environment: str,
    numprocs: int | None = None,
    user: str | None = None,
    comment: str = "",
    stop_as_group: bool = True,
) -> str:
    log = logs_dir(settings)
    lines = [f"[program:{name}]"]
    if comment:
        lines.append(f"; {comment}")
    lines.append("command=" + " ".join(shlex.quote(part) for part in command).replace("%", "%%"))
    if numprocs is not None:
        lines += ["process_name=%(program_name)s-%(process_num)d", f"numprocs={numprocs}"]
        logfile = f"{log}/%(program_name)s-%(process_num)d.log"
    else:
        logfile = f"{log}/%(program_name)s.log"
    lines += [
        f"directory={settings.home}",
        f"environment={environment}",
        f"priority={priority}",
        "autostart=true",
        "autorestart=true",
        f"startsecs={START_SECONDS}",
        f"startretries={START_RETRIES}",
        "stopsignal=TERM",
        f"stopwaitsecs={stopwaitsecs}",
        f"stopasgroup={str(stop_as_group).lower()}",
        "killasgroup=true",
        f"stdout_logfile={logfile}",
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=5",
        "redirect_stderr=true",
    ]
    if user:
        lines.append(f"user={user}")
    return "\n".join(lines) + "\n"


def _standalone_header(settings: Settings) -> str:
    sdir = supervisor_dir(settings)
    socket = sdir / "supervisor.sock"
    if len(str(socket)) > 100:  # sun_path limit
        socket = Path("/tmp") / f"contentq-supervisor-{hashlib.sha256(str(sdir).encode()).hexdigest()[:12]}.sock"
    return "\n".join(
        [
            "[unix_http_server]",
            f"file={socket}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={logs_dir(settings)}/supervisord.log",
            f"pidfile={sdir}/supervisord.pid",
            f"childlogdir={logs_dir(settings)}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{socket}",
            "",
            "",
        ]
    )


def render(
    settings: Settings,
    *,
    python: str | None = None,
    user: str | None = None,
    standalone: bool = False,
    extra_env: dict[str, str] | None = None,
) -> str:
    """The supervisor config for these settings; the same settings always give the same text."""
    exe = one_line("--python", python or sys.executable)
    if user is not None:
        one_line("--user", user)
    one_line("CONTENTQ_HOME", str(settings.home))
    extra = dict(extra_env or {})
    groups = worker_groups(settings)
    programs: list[str] = []
    notes: list[str] = []
    if uses_embedded_redis(settings):
        env, more = _environment(settings, worker=False, extra_env=extra)
        notes += more
        programs.append(
            _program(
                REDIS_PROGRAM,
                keeper_command(exe, settings, groups),
                settings,
                priority=REDIS_PRIORITY,
                stopwaitsecs=stop_grace(settings, groups) + STOP_GRACE_SECONDS,
                environment=env,
                user=user,
                comment="the embedded Valkey (CONTENTQ_REDIS_URL is unset), a group of its own: started first,"
                " stopped last (it waits for the workers to unregister; TERM to its keeper only, not to Valkey)",
                stop_as_group=False,
            )
        )
    for group in groups:
        env, more = _environment(settings, worker=True, extra_env=extra)
        notes += [n for n in more if n not in notes]
        comment = (
            group.note or f"queue {', '.join(group.queues)}: numprocs from CONTENTQ_{group.name.upper()}_CONCURRENCY"
        )
        programs.append(
            _program(
                group.program,
                [exe, "-m", "contentq", "worker", *group.queues, *_host_option(group)],
                settings,
                priority=WORKER_PRIORITY,
                stopwaitsecs=group.stopwaitsecs,
                environment=env,
                numprocs=group.numprocs,
                user=user,
                comment=comment,
            )
        )
    if settings.litestream_url:
        programs.append(_litestream_program(settings, python, user, extra))
    compact = settings.process_layout == "compact"  # the telegram worker hosts the listeners and the bot
    listens = listen_needed(settings) and not compact
    if listens:
        programs.append(_listen_program(settings, exe, user, extra))
    bot = bot_needed(settings) and not compact
    if bot:
        programs.append(_bot_program(settings, exe, user, extra))
    env, more = _environment(settings, worker=True, extra_env=extra)
    notes += [n for n in more if n not in notes]
    programs.append(
        _program(
            WEB_PROGRAM,
            [exe, "-m", "contentq", "web"],
            settings,
            priority=WEB_PRIORITY,
            stopwaitsecs=STOP_GRACE_SECONDS,
            environment=env,
            user=user,
            comment="the admin panel and JSON API on 127.0.0.1:8700 (`contentq web token` prints the login token)",
        )
    )
    names = [g.program for g in groups]
    names += [LITESTREAM_PROGRAM] if settings.litestream_url else []
    names += [LISTEN_PROGRAM] if listens else []
    names += [BOT_PROGRAM] if bot else []
    names.append(WEB_PROGRAM)
    header = [
        "; contentq workers for supervisor, rendered from settings by `contentq supervisor render`.",
        "; Re-render after changing concurrency or timeouts, then: supervisorctl reread && supervisorctl update",
        "; Status: supervisorctl status 'contentq:*'" + (f" {REDIS_PROGRAM}" if uses_embedded_redis(settings) else ""),
    ]
    header += [f"; NOTE: {n}" for n in dict.fromkeys(notes)]
    parts = ["\n".join(header) + "\n\n"]
    if standalone:
        parts.append(_standalone_header(settings))
    parts.append(f"[group:{GROUP}]\nprograms={','.join(names)}\npriority={WORKER_PRIORITY}\n\n")
    parts.append("\n".join(programs))
    return "".join(parts)


def _host_option(group: WorkerGroup) -> list[str]:
    return ["--host", ",".join(group.host)] if group.host else []


HOSTED_NOTES = {"listen": "the listeners (one per account that reads sources)", "bot": "the admin bot"}


def hosted_programs(settings: Settings) -> tuple[str, ...]:
    """What the telegram worker hosts in the compact layout (one Telethon, each session in one process): the
    listeners when a route has sources, the bot when a token is set. The spread layout runs them as programs of
    their own (contentq-listen, contentq-bot)."""
    if settings.process_layout != "compact":
        return ()
    return tuple(name for name, wanted in (("listen", listen_needed(settings)), ("bot", bot_needed(settings)))
                 if wanted)  # fmt: skip


LISTEN_PROGRAM = f"{GROUP}-listen"
"""`contentq listen`: one process per Telegram session, taking donor posts as they arrive."""


def listen_needed(settings: Settings) -> bool:
    """A route reads donor channels, so `contentq listen` has work (a routes file that cannot be read: rendered,
    the listener says what is wrong). Without a login the listener waits and says so, never exits."""
    try:
        return bool(load_routes(settings.config_path).sources())
    except ContentqError:
        return True


def _listen_program(settings: Settings, exe: str, user: str | None, extra: dict[str, str]) -> str:
    env, _ = _environment(settings, worker=True, extra_env=extra)
    return _program(
        LISTEN_PROGRAM, [exe, "-m", "contentq", "listen"], settings, priority=WORKER_PRIORITY,
        stopwaitsecs=STOP_GRACE_SECONDS, environment=env, user=user,
        comment="real-time collection: one listener per Telegram session (cron collect stays as the safety net);"
        " rendered when a route has sources; until `contentq login` it waits (health: not logged in)",
    )  # fmt: skip


BOT_PROGRAM = f"{GROUP}-bot"
"""`contentq bot`: the admin bot (docs/bot.md), one process (its Telegram session is its own)."""


def bot_needed(settings: Settings) -> bool:
    """A bot token is configured: the bot runs (without admins it says so in its log and exits)."""
    return settings.bot_token is not None and bool(settings.bot_token.get_secret_value().strip())


def _bot_program(settings: Settings, exe: str, user: str | None, extra: dict[str, str]) -> str:
    env, _ = _environment(settings, worker=True, extra_env=extra)
    return _program(
        BOT_PROGRAM, [exe, "-m", "contentq", "bot"], settings, priority=WEB_PRIORITY,
        stopwaitsecs=STOP_GRACE_SECONDS, environment=env, user=user,
        comment="the admin bot (CONTENTQ_BOT_TOKEN is set): approval cards, alerts and commands in Telegram;"
        " its token stays in .env, never in this file",
    )  # fmt: skip


LITESTREAM_PROGRAM = f"{GROUP}-litestream"
"""`litestream replicate` (with CONTENTQ_LITESTREAM_URL): the database streamed to its replica as it changes."""


def _litestream_program(settings: Settings, python: str | None, user: str | None, extra: dict[str, str]) -> str:
    binary = litestream.require_binary(python)
    one_line("CONTENTQ_LITESTREAM_URL", settings.litestream_url or "")
    env, _ = _environment(settings, worker=False, extra_env=extra)
    return _program(
        LITESTREAM_PROGRAM, litestream.replicate_command(settings, binary), settings, priority=LITESTREAM_PRIORITY,
        stopwaitsecs=STOP_GRACE_SECONDS, environment=env, user=user,
        comment=f"continuous replication (CONTENTQ_LITESTREAM_URL) as {litestream.config_path(settings)} says",
    )  # fmt: skip


def write_side_files(settings: Settings) -> list[Path]:
    """Files the programs read besides the config: litestream.yml when replication is on."""
    return [litestream.write_config(settings)] if settings.litestream_url else []


def write(settings: Settings, output: Path, **options: object) -> Path:
    """Write the rendered config (and litestream.yml when replication is on) and create the log directory
    supervisor needs (it does not create it)."""
    text = render(settings, **options)  # type: ignore[arg-type]
    write_side_files(settings)
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    supervisor_dir(settings).mkdir(parents=True, exist_ok=True)
    return write_file(output, text)  # private: --env values may be credentials


# Comparing an installed file with the settings (doctor) -------------------------------------------------------


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=None)
    parser.read_string(text)
    return parser


def _summary(parser: configparser.RawConfigParser) -> dict[str, dict[str, str]]:
    """Per contentq program: what matters for behaviour (the interpreter path may differ between machines)."""
    out: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        if not section.startswith(f"program:{GROUP}-"):
            continue
        body = parser[section]
        command = shlex.split(body.get("command", "").replace("%%", "%"))
        env = {
            k: v.strip('"') for k, _, v in (item.partition("=") for item in body.get("environment", "").split(",")) if k
        }
        out[section.removeprefix("program:")] = {
            "command": " ".join(command[1:]),
            "numprocs": body.get("numprocs", "1"),
            "stopwaitsecs": body.get("stopwaitsecs", "10"),
            "CONTENTQ_HOME": env.get("CONTENTQ_HOME", "").replace("%%", "%"),
        }
    return out


def compare(installed_text: str, settings: Settings) -> list[str]:
    """Differences between an installed config and what the settings render; empty when they match."""
    try:
        have = _summary(_parse(installed_text))
    except configparser.Error as exc:
        return [f"not a valid supervisor config: {exc}"]
    want = _summary(_parse(render(settings)))
    problems = []
    for name in sorted(set(want) - set(have)):
        problems.append(f"program {name} is missing")
    for name in sorted(set(have) - set(want)):
        problems.append(f"program {name} is not in the settings")
    for name in sorted(set(want) & set(have)):
        for key, value in want[name].items():
            if have[name][key] != value:
                problems.append(f"{name}: {key} is {have[name][key]!r}, settings give {value!r}")
    return problems
