"""Health of `contentq listen`: from each listener's heartbeat row, whether it runs, is connected, and how far
behind it is. Used by `contentq health` and `contentq doctor`."""

from __future__ import annotations

from typing import Any

from contentq.clock import now, parse
from contentq.ops.probe import FAIL, OK, SKIP, WARN, Probe
from contentq.settings import Settings
from contentq.store.db import open_store
from contentq.store.listeners import get_listeners

MISSED_BEATS = 3
"""A listener whose heartbeat is older than this many intervals (and at least 30 s) is not running."""


def _age(value: str | None) -> float | None:
    return None if not value else max(0.0, (now() - parse(value)).total_seconds())


def listener_program(settings: Settings) -> str:
    """The supervisor program a listener runs in: the telegram worker (compact layout) or its own (spread)."""
    return "contentq:contentq-telegram-0" if settings.process_layout == "compact" else "contentq:contentq-listen"


def listener_probe(row: dict[str, Any], settings: Settings) -> Probe:
    name = f"listener {row['name']}"
    program = listener_program(settings)
    beat_age = _age(row["heartbeat_at"]) or 0.0
    if row["state"] in WAITING and beat_age <= max(30.0, MISSED_BEATS * settings.listen_heartbeat):
        return _waiting_probe(name, row, settings)
    if row["state"] == "stopped":
        return Probe(name, WARN, f"stopped (last heartbeat {beat_age:.0f} s ago)",
                     f"supervisorctl start {program}")  # fmt: skip
    if beat_age > max(30.0, MISSED_BEATS * settings.listen_heartbeat):
        return Probe(name, FAIL, f"not running: no heartbeat for {beat_age:.0f} s (pid {row['pid']} on {row['host']})",
                     f"supervisorctl status {program}; see its log")  # fmt: skip
    if row["state"] == "disconnected":
        down = _age(row["disconnected_since"]) or 0.0
        detail = f"disconnected from Telegram for {down:.0f} s ({row['disconnect_reason'] or 'no reason given'})"
        status = FAIL if down >= settings.listen_alert_after else WARN
        return Probe(name, status, detail, "check the network and `contentq login --status`")
    last = _age(row["last_update_at"])
    behind = row["lag_seconds"]
    detail = (
        f"{row['state']}, {len(row['sources'])} source(s), {row['updates']} update(s), "
        f"{row['reconnects']} reconnect(s); "
        + (f"last update {last:.0f} s ago, {behind:.1f} s behind the donor" if last is not None and behind is not None
           else "no update yet")
    )  # fmt: skip
    return Probe(name, OK, detail)


WAITING = ("not_logged_in", "waiting")
"""States of a listener process that runs but cannot listen (contentq.intake.listen.ListenService): it tries again."""

LOGIN_FIX = (
    "`contentq login` (with CONTENTQ_TG_API_ID and CONTENTQ_TG_API_HASH in .env): the listener notices the login "
    "and starts by itself"
)


def _waiting_probe(name: str, row: dict[str, Any], settings: Settings) -> Probe:
    """Not logged in: a warning (outbox routes and imports work without Telegram). Unable to start for another
    reason (Telegram unreachable, an error): a warning, a failure once it lasts CONTENTQ_LISTEN_ALERT_AFTER."""
    reason = row["disconnect_reason"] or "no reason given"
    if row["state"] == "not_logged_in":
        return Probe(name, WARN, f"not logged in: {reason}", LOGIN_FIX)
    down = _age(row["disconnected_since"]) or 0.0
    status = FAIL if down >= settings.listen_alert_after else WARN
    log = listener_program(settings).split(":")[1]
    return Probe(name, status, f"not listening for {down:.0f} s, trying again: {reason}",
                 f"see the listener's log (supervisor: logs/{log}.log)")  # fmt: skip


def check_listeners(settings: Settings, *, when_none: bool = False) -> list[Probe]:
    """One probe per listener that ever ran; with `when_none`, a skip line when none did (doctor)."""
    if not settings.db_path.exists():
        return []
    store = open_store(settings.db_path, settings.db_busy_timeout_ms, migrate=False)
    try:
        has_table = store.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'listeners'")
        rows = get_listeners(store) if has_table else []
    finally:
        store.close()
    if not rows:
        note = Probe("listener", SKIP, "no `contentq listen` has run: posts come through cron collect")
        return [note] if when_none else []
    return [listener_probe(row, settings) for row in rows]
