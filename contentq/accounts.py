"""Telegram accounts: which account reads a source and posts to a target, and what each account's health means.

Every worker and listener reports what it sees of an account (`tg_account_health`): connected, unreachable,
logged out (AuthKeyUnregisteredError, SessionRevokedError, no session), banned (UserDeactivatedError,
UserDeactivatedBanError), restricted (PeerFloodError), and the end of a FLOOD_WAIT. A logged-out or banned
account pauses the routes that use it, and only those: their publish jobs wait (`Reschedule`, the reason on the
post), their collection falls back to `fallback_accounts` that can read the donor, and the admin is told once
per episode with the command that fixes it. Nothing about it fails a job or stops a worker or a listener.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telethon import errors as tg_errors

from contentq import actors
from contentq.clock import iso, now, parse
from contentq.errors import ConfigError, Reschedule
from contentq.integrations.telegram.gateway import Account, NotLoggedInError
from contentq.integrations.telegram.profiles import (
    MAIN_ACCOUNT,
    check_account_name,
    parse_proxy,
    profile_from_row,
    session_file_for,
    shown_proxy,
)
from contentq.redact import redact
from contentq.routes import Route, RoutesConfig
from contentq.runtime.context import Runtime
from contentq.store import Store
from contentq.store.tg_accounts import (
    DOWN_STATUSES,
    account_names,
    claim_alert,
    clear_health,
    delete_account,
    get_account,
    get_health,
    insert_account,
    list_accounts,
    record_flood,
    record_status,
    update_account,
)

log = logging.getLogger("contentq.accounts")

OK_REPORT_EVERY = 60.0
"""A process writes an account's `connected` at most this often (seconds): health without a write per job."""


# -- which account -----------------------------------------------------------------------------------


def default_account(store: Store) -> str:
    """The account a route uses when it names none: the only one, or `main` among several."""
    names = account_names(store)
    if len(names) == 1:
        return names[0]
    if MAIN_ACCOUNT in names:
        return MAIN_ACCOUNT
    if not names:
        raise ConfigError("no Telegram account: add one with `contentq accounts add NAME`, then log it in")
    raise ConfigError(
        f"several Telegram accounts ({', '.join(names)}) and none is `main`: name the one each route uses "
        '(account = "NAME" in [routes.NAME] of contentq.toml)'
    )


def _existing(store: Store, name: str, route: Route, what: str) -> str:
    if name not in account_names(store):
        raise ConfigError(
            f"route {route.name!r} names Telegram account {name!r} ({what}), which does not exist: add it with "
            f"`contentq accounts add {name}`, or fix the route"
        )
    return name


def reader_of(store: Store, route: Route, source: str) -> str:
    """The account that reads `source` for `route`."""
    named = route.reader_named(source)
    return _existing(store, named, route, "reader") if named else default_account(store)


def readers_of(store: Store, route: Route, source: str) -> list[str]:
    """The reader of `source`, then the route's fallback accounts (those that exist), in order."""
    first = reader_of(store, route, source)
    known = set(account_names(store))
    return list(dict.fromkeys([first, *(n for n in route.fallback_accounts if n in known)]))


def poster_of(store: Store, route: Route, target: str) -> str:
    """The account that posts to the Telegram channel `target` for `route`."""
    named = route.poster_named(target)
    return _existing(store, named, route, "poster") if named else default_account(store)


def account_uses(store: Store, config: RoutesConfig) -> dict[str, dict[str, list[str]]]:
    """Account → route name → what the route uses it for (read, post, fallback), in one pass over the routes."""
    try:
        default: str | None = default_account(store)
    except ConfigError:
        default = None
    out: dict[str, dict[str, list[str]]] = {}

    def use(account: str | None, route: str, what: str) -> None:
        if account is not None and what not in (found := out.setdefault(account, {}).setdefault(route, [])):
            found.append(what)

    for name, route in config.routes.items():
        for source in route.sources:
            use(route.reader_named(source) or default, name, "read")
        if route.publisher == "telegram":
            for target in route.telegram_targets():
                use(route.poster_named(target) or default, name, "post")
        for fallback in route.fallback_accounts:
            use(fallback, name, "fallback")
    return out


def routes_using(store: Store, config: RoutesConfig, account: str) -> dict[str, list[str]]:
    """Route name → what it uses `account` for (read, post, fallback)."""
    return account_uses(store, config).get(account, {})


# -- health ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What an error says about the account that got it."""

    status: str  # logged_out, banned, restricted
    detail: str


def classify(exc: BaseException) -> Problem | None:
    """The account's problem an error shows; None for an error that says nothing about the account."""
    name = type(exc).__name__
    if isinstance(exc, NotLoggedInError):
        return Problem("logged_out", str(exc))
    if isinstance(exc, tg_errors.UserDeactivatedBanError | tg_errors.UserDeactivatedError):
        return Problem("banned", f"Telegram deactivated or banned the account ({name})")
    if isinstance(exc, tg_errors.AuthKeyUnregisteredError | tg_errors.SessionRevokedError
                  | tg_errors.SessionExpiredError | tg_errors.AuthKeyDuplicatedError):  # fmt: skip
        return Problem("logged_out", f"the session was logged out ({name})")
    if isinstance(exc, tg_errors.UnauthorizedError):
        return Problem("logged_out", f"the session is not authorized ({name})")
    if isinstance(exc, tg_errors.PeerFloodError):
        return Problem("restricted", f"Telegram limits what the account may send ({name})")
    return None


def fix_for(account: str, status: str) -> str:
    """What the operator does about an account in this status."""
    login = "contentq login" if account == MAIN_ACCOUNT else f"contentq accounts login {account}"
    if status == "logged_out":
        return f"log it in again: `{login}`"
    if status == "not_logged_in":
        return f"log it in: `{login}`"
    if status == "banned":
        return (
            f"the account cannot be used: name another account on its routes (account = … in contentq.toml), "
            f"or appeal at https://telegram.org/support and then `{login}`"
        )
    if status == "restricted":
        return "send less from it (or move routes to another account); @SpamBot tells how long the limit lasts"
    if status == "unreachable":
        return "check the network and the account's proxy (`contentq accounts list`)"
    return ""


def report_ok(runtime: Runtime, account: str, user: Account | None = None) -> None:
    """The account worked just now (at most one write a minute per process and account)."""
    seen: dict[tuple[str, bool], float] = runtime.services.setdefault("account_ok_at", {})
    key = (account, user is not None)  # who it is logged in as is written the first time it is known
    if key in seen and time.monotonic() - seen[key] < OK_REPORT_EVERY:
        return
    seen[key] = time.monotonic()
    who = {"user_id": user.id, "username": user.username} if user is not None else {}
    before, _ = record_status(runtime.store, account, "connected", None, actors.current(), **who)
    if before is not None and before["status"] in DOWN_STATUSES:
        log.info("Telegram account %s works again (was %s)", account, before["status"])


def _forget_ok(runtime: Runtime, account: str) -> None:
    """The next `report_ok` of the account writes at once (its status just changed)."""
    seen = runtime.services.get("account_ok_at", {})
    for key in [k for k in seen if k[0] == account]:
        del seen[key]


def report_unreachable(runtime: Runtime, account: str, exc: BaseException) -> None:
    """Telegram could not be reached with the account (network, proxy); a logged-out or banned account stays so."""
    health = get_health(runtime.store, account)
    if health is not None and health["status"] in DOWN_STATUSES:
        return
    record_status(runtime.store, account, "unreachable", redact(f"{type(exc).__name__}: {exc}")[:300],
                  actors.current())  # fmt: skip
    _forget_ok(runtime, account)


def report_problem(runtime: Runtime, account: str, problem: Problem) -> str:
    """Record what an error showed of the account and, the first time in this episode, tell the admin what to
    do (once, whichever worker or listener saw it first). Returns the reason jobs of its routes wait with."""
    fix = fix_for(account, problem.status)
    _, after = record_status(runtime.store, account, problem.status, redact(problem.detail)[:300], actors.current())
    _forget_ok(runtime, account)
    reason = f"Telegram account {account!r} is {problem.status.replace('_', ' ')}: {problem.detail}; {fix}"
    try:
        if problem.status in DOWN_STATUSES:  # once per episode, whichever process saw it first
            if claim_alert(runtime.store, account, f"{problem.status}@{after['since']}"):
                runtime.notifier.notify(f"account:{account}:{problem.status}:{after['since']}",
                                        f"{reason}. Its routes wait until it is back.", level="error",
                                        once=True)  # fmt: skip
        else:  # a limit comes and goes with the account's use: throttled like any repeated alert
            runtime.notifier.notify(f"account:{account}:{problem.status}", f"{reason}. Its routes go on.")
    except Exception as exc:  # the alert is recorded; a notifier in trouble must not change the job's outcome
        log.warning("could not tell the admin about account %s: %s", account, redact(exc))
    return reason


def pause_reason(runtime: Runtime, account: str) -> str | None:
    """Why jobs that need `account` wait now (logged out, banned), or None when it may be used."""
    health = get_health(runtime.store, account)
    if health is None or health["status"] not in DOWN_STATUSES:
        return None
    return (
        f"Telegram account {account!r} is {health['status'].replace('_', ' ')} since {health['since'][:16]} "
        f"({health['detail'] or 'no detail'}); {fix_for(account, health['status'])}"
    )


def send_budget(runtime: Runtime, account: str) -> int:
    """Sends a minute the account may make: its own budget, else CONTENTQ_PUBLISH_ACCOUNT_BUDGET (0: no limit)."""
    row = get_account(runtime.store, account)
    if row is not None and row["send_budget"] is not None:
        return int(row["send_budget"])
    return runtime.settings.publish_account_budget


def paused(runtime: Runtime, account: str, reason: str) -> Reschedule:
    """The wait of a job whose account is down: looked at again every CONTENTQ_TG_ACCOUNT_RECHECK seconds."""
    return Reschedule(runtime.settings.tg_account_recheck, f"paused: {reason}")


def report_flood(runtime: Runtime, account: str, seconds: float, during: str) -> None:
    """A FLOOD_WAIT Telegram asked of the account (during 'send' or 'read'): other jobs wait it out too."""
    until = iso(now() + timedelta(seconds=seconds))
    record_flood(runtime.store, account, until, int(seconds), during, actors.current())


def flood_left(runtime: Runtime, account: str, during: str) -> float:
    """Seconds left of the account's flood wait for this kind of request (0: none)."""
    health = get_health(runtime.store, account)
    if health is None or not health["flood_until"] or health["flood_during"] != during:
        return 0.0
    return max(0.0, (parse(health["flood_until"]) - now()).total_seconds())


def health_rows(runtime: Runtime, config: RoutesConfig | None) -> list[dict[str, Any]]:
    """Every account with its health and the routes that use it: `accounts list`, health, doctor, the panel."""
    rows = []
    every_use = account_uses(runtime.store, config) if config is not None else {}
    for row in list_accounts(runtime.store):
        name = row["name"]
        flood = row["flood_until"] if row["flood_until"] and parse(row["flood_until"]) > now() else None
        uses = every_use.get(name, {})
        status = row["status"] or ("unknown" if _has_session(runtime, row) else "not_logged_in")
        rows.append({
            "name": name, "status": status, "since": row["since"], "detail": row["detail"],
            "checked_at": row["checked_at"], "reporter": row["reporter"], "user_id": row["user_id"],
            "username": row["username"], "flood_until": flood, "flood_during": row["flood_during"] if flood else None,
            "proxy": shown_proxy(row["proxy"]), "session_file": row["session_file"],
            "device_model": row["device_model"], "send_budget": row["send_budget"],
            "routes": {k: v for k, v in sorted(uses.items())},
            "paused_routes": sorted(uses) if row["status"] in DOWN_STATUSES else [],
            "fix": fix_for(name, status),
        })  # fmt: skip
    return rows


def _has_session(runtime: Runtime, row: dict[str, Any]) -> bool:
    """A session is saved for the account (main: or given in CONTENTQ_TG_SESSION), or a stand-in serves it."""
    settings = runtime.settings
    if settings.tg_gateway or (row["name"] == MAIN_ACCOUNT and settings.tg_session is not None):
        return True
    return bool((settings.home / str(row["session_file"])).exists())


# -- managing accounts (`contentq accounts …`) --------------------------------------------------------


def _fields(
    proxy: str | None, device_model: str | None, system_version: str | None, app_version: str | None,
    lang_code: str | None, send_budget: int | None,
) -> dict[str, Any]:  # fmt: skip
    """The options given, checked: a proxy that does not parse is refused before anything is stored."""
    fields: dict[str, Any] = {}
    if proxy is not None:
        fields["proxy"] = parse_proxy(proxy).url if proxy.strip() else None  # '' removes the proxy
    for column, value in (("device_model", device_model), ("system_version", system_version),
                          ("app_version", app_version), ("lang_code", lang_code)):  # fmt: skip
        if value is not None:
            if len(value) > 64 or not value.isprintable():
                raise ConfigError(f"{column.replace('_', '-')}: at most 64 printable characters")
            fields[column] = value.strip() or None
    if send_budget is not None:
        if not 0 <= send_budget <= 10_000:
            raise ConfigError("budget: sends a minute from 0 (no limit) to 10000")
        fields["send_budget"] = send_budget
    return fields


def add_account(
    runtime: Runtime, name: str, *, proxy: str | None = None, device_model: str | None = None,
    system_version: str | None = None, app_version: str | None = None, lang_code: str | None = None,
    send_budget: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A new named account (not logged in yet: `contentq accounts login NAME`)."""
    check_account_name(name)
    if get_account(runtime.store, name) is not None:
        raise ConfigError(f"account {name!r} exists already: change it with `contentq accounts set {name} …`")
    fields = _fields(proxy, device_model, system_version, app_version, lang_code, send_budget)
    insert_account(runtime.store, name, session_file_for(name), **fields)
    return account_row(runtime, name)


def set_account(
    runtime: Runtime, name: str, *, proxy: str | None = None, device_model: str | None = None,
    system_version: str | None = None, app_version: str | None = None, lang_code: str | None = None,
    send_budget: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Change an account's proxy, fingerprint or budget; its workers use them after their restart."""
    _must_exist(runtime.store, name)
    update_account(runtime.store, name, **_fields(proxy, device_model, system_version, app_version, lang_code,
                                                  send_budget))  # fmt: skip
    return account_row(runtime, name)


def remove_account(runtime: Runtime, name: str, config: RoutesConfig) -> dict[str, Any]:
    """Remove an account and its session file; refused while a route uses it."""
    row = _must_exist(runtime.store, name)
    uses = routes_using(runtime.store, config, name)
    if uses:
        listed = ", ".join(f"{route} ({'/'.join(what)})" for route, what in sorted(uses.items()))
        raise ConfigError(
            f"account {name!r} is used by route(s) {listed}: name another account on them in "
            f"{config.path or 'contentq.toml'} first"
        )
    session = runtime.settings.home / row["session_file"]
    delete_account(runtime.store, name)
    session.unlink(missing_ok=True)
    return {"name": name, "session_file": str(session), "removed": True}


def _must_exist(store: Store, name: str) -> dict[str, Any]:
    row = get_account(store, name)
    if row is None:
        known = ", ".join(account_names(store)) or "none"
        raise ConfigError(
            f"no Telegram account {name!r} (accounts: {known}); add it with `contentq accounts add {name}`"
        )
    return row


def account_row(runtime: Runtime, name: str, config: RoutesConfig | None = None) -> dict[str, Any]:
    return next(r for r in health_rows(runtime, config) if r["name"] == name)


def logged_in(runtime: Runtime, name: str, user: Account) -> None:
    """After a login: the account works (a new episode: a later logout alerts again)."""
    clear_health(runtime.store, name)
    _forget_ok(runtime, name)
    report_ok(runtime, name, user)


def check_account(runtime: Runtime, name: str) -> dict[str, Any]:
    """Ask Telegram now whether the account works (connect through its proxy, who is logged in) and record it."""
    from contentq.integrations.telegram.access import gateway_of

    _must_exist(runtime.store, name)
    gateway = gateway_of(runtime, name)
    try:
        gateway.ensure_ready()
        user = gateway.account()
    except (ConnectionError, OSError) as exc:
        report_unreachable(runtime, name, exc)
    except Exception as exc:
        problem = classify(exc)
        if problem is None:
            raise
        report_problem(runtime, name, problem)
    else:
        _forget_ok(runtime, name)
        report_ok(runtime, name, user)
    return account_row(runtime, name)


def login_account(
    runtime: Runtime, name: str, phone: str, ask_code: Callable[[], str], ask_password: Callable[[], str]
) -> tuple[Account, str]:
    """Log an account in (phone → code → 2FA) through its proxy and with its fingerprint; its session file is
    written (mode 0600) and its health starts afresh. Returns the user and the session file."""
    from contentq.integrations.telegram.login import login  # Telethon: only when logging in

    profile = profile_from_row(runtime.settings, _must_exist(runtime.store, name))
    user = login(runtime.settings, phone, ask_code, ask_password, profile)
    logged_in(runtime, name, user)
    return user, str(profile.session_path)
