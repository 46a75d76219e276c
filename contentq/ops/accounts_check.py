"""The health of each Telegram account, as its workers and listeners last reported it (docs/accounts.md): one
probe per account for `contentq doctor` and `contentq health`. Nothing here asks Telegram
(`contentq accounts list --check` does)."""

from __future__ import annotations

from typing import Any

from contentq.accounts import fix_for, routes_using
from contentq.clock import now, parse
from contentq.ops.probe import FAIL, OK, WARN, Probe
from contentq.routes import RoutesConfig
from contentq.settings import Settings
from contentq.store import Store
from contentq.store.db import open_store
from contentq.store.tg_accounts import DOWN_STATUSES, accounts_ready, list_accounts


def account_probe(settings: Settings, store: Store, row: dict[str, Any], routes: RoutesConfig | None) -> Probe:
    name = row["name"]
    check = f"telegram account {name}"
    uses = routes_using(store, routes, name) if routes is not None else {}
    used = ", ".join(f"{r} ({'/'.join(u)})" for r, u in sorted(uses.items())) or "no route"
    status = row["status"]
    if status in DOWN_STATUSES:
        paused = f"; route(s) {', '.join(sorted(uses))} wait for it" if uses else ""
        return Probe(check, FAIL if uses else WARN,
                     f"{status.replace('_', ' ')} since {row['since'][:16]} ({row['detail']}){paused}",
                     fix_for(name, status))  # fmt: skip
    session = settings.home / row["session_file"]
    env_session = name == "main" and settings.tg_session is not None
    if not env_session and not session.exists() and not settings.tg_gateway:
        return Probe(check, WARN if uses else OK, f"not logged in ({session} is missing); used by {used}",
                     fix_for(name, "logged_out"))  # fmt: skip
    if row["flood_until"] and parse(row["flood_until"]) > now():
        left = (parse(row["flood_until"]) - now()).total_seconds()
        return Probe(check, WARN, f"FLOOD_WAIT of its {row['flood_during']}s for {left:.0f} s more "
                     f"(until {row['flood_until'][:16]}); used by {used}", "nothing: its jobs wait it out")  # fmt: skip
    if status in ("restricted", "unreachable"):
        return Probe(check, WARN, f"{status} since {row['since'][:16]} ({row['detail']}); used by {used}",
                     fix_for(name, status))  # fmt: skip
    if status == "connected":
        who = f" as @{row['username']}" if row["username"] else ""
        return Probe(check, OK, f"connected{who} (seen {row['checked_at'][:16]} by {row['reporter']}); used by {used}")
    return Probe(check, OK, f"no report yet; used by {used}")


def check_accounts(settings: Settings, routes: RoutesConfig | None, *, only_known: bool = False) -> list[Probe]:
    """One probe per account: a logged-out or banned account that routes use fails (they wait for it). With
    `only_known` (health), an account that no route uses and nothing reported on is left out."""
    if not settings.db_path.exists():
        return []
    store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False)
    try:
        if not accounts_ready(store):
            return [Probe("telegram accounts", WARN, "the database predates accounts",
                          "run `contentq db migrate`: the session becomes account main")]  # fmt: skip
        rows = list_accounts(store)
        if only_known:
            rows = [r for r in rows if r["status"] or (routes is not None and routes_using(store, routes, r["name"]))]
        return [account_probe(settings, store, row, routes) for row in rows]
    finally:
        store.close()
