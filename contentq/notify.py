"""Admin notifications: a backend Protocol, with throttling and de-duplication of repeated alerts.

Every notification is recorded in SQLite (`contentq notifications` lists them); one with the same key as
a delivered one inside the throttle window is counted as suppressed instead of being sent again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from contentq.clock import iso, now
from contentq.redact import redact
from contentq.runtime.context import Runtime, provide
from contentq.store import Store
from contentq.store.bot import queue_alert

log = logging.getLogger("contentq.notify")


class NotifierBackend(Protocol):
    name: str

    def send(self, message: str, level: str, key: str = "") -> None:
        """Deliver one alert; `key` names what it is about (a job, a post, a queue) for backends that offer
        actions on it (the bot's buttons)."""


class LogBackend:
    """Writes alerts to the process log (supervisor keeps it); the default when no admin chat is set."""

    name = "log"

    def send(self, message: str, level: str, key: str = "") -> None:
        log.log(logging.ERROR if level == "error" else logging.WARNING, "ADMIN: %s", message)


class BotBackend:
    """Alerts for the admin bot (CONTENTQ_BOT_TOKEN set): queued in SQLite, where `contentq bot` (the one process
    logged in as the bot) takes them and sends them to the admin chat with buttons that fit (docs/bot.md)."""

    name = "bot"

    def __init__(self, store: Store) -> None:
        self.store = store

    def send(self, message: str, level: str, key: str = "") -> None:
        queue_alert(self.store, key, level, message)


class Notifier:
    def __init__(self, store: Store, backend: NotifierBackend, throttle_seconds: int = 600) -> None:
        self.store = store
        self.backend = backend
        self.throttle = timedelta(seconds=throttle_seconds)

    def notify(self, key: str, message: str, level: str = "warning", *, once: bool = False) -> bool:
        """Send unless the same key was delivered within the throttle window (with `once`: ever, for an alert
        per episode whose key names the episode); True when sent."""
        message = redact(message)
        stamp = now()
        with self.store.transaction() as conn:
            last = conn.execute(
                "SELECT id FROM notifications WHERE key = ? AND delivered = 1 AND at > ? ORDER BY id DESC LIMIT 1",
                (key, "" if once else iso(stamp - self.throttle)),
            ).fetchone()
            if last is not None:
                conn.execute("UPDATE notifications SET suppressed = suppressed + 1 WHERE id = ?", (last[0],))
                return False
            cursor = conn.execute(
                "INSERT INTO notifications (key, at, level, message, delivered) VALUES (?, ?, ?, ?, 1)",
                (key, iso(stamp), level, message),
            )
            row_id = cursor.lastrowid
        try:
            self.backend.send(message, level, key)
        except Exception as exc:  # an alert that cannot be delivered must not fail the job that raised it
            log.warning("notification %s not delivered by %s: %s", key, self.backend.name, redact(exc))
            self.store.execute("UPDATE notifications SET delivered = 0 WHERE id = ?", (row_id,))
            return False
        return True


def admin_backend(runtime: Runtime) -> NotifierBackend:
    """The admin bot when CONTENTQ_BOT_TOKEN is set, else the admin chat on Telegram when CONTENTQ_TG_ADMIN_CHAT
    is set, else the log."""
    if runtime.settings.bot_token is not None and runtime.settings.bot_admin_ids:
        return BotBackend(runtime.store)
    if runtime.settings.tg_admin_chat:
        try:
            from contentq.integrations.telegram.notifier import telegram_backend
        except ImportError:
            pass
        else:
            return telegram_backend(runtime)
    return LogBackend()


def build_notifier(runtime: Runtime) -> Notifier:
    return Notifier(runtime.store, admin_backend(runtime), runtime.settings.notify_throttle_seconds)


def install() -> None:
    """Give the runtime its notifier (`Runtime.notifier`): the runtime does not know this module. Called once by
    each entry point (the CLI, the web app, the tests)."""
    provide("notifier", build_notifier)
