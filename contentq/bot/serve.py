"""`contentq bot`'s loop: log in, then handle what arrives and do the periodic work between, until stopped.

The gateway reconnects by itself after a lost connection and hands over what Telegram kept meanwhile; a press
that fails to be handled (a bug, SQLite locked too long) is logged and the loop goes on: one update never stops
the bot. Supervisor restarts a bot that exits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis
from telethon import errors
from tenacity import retry, retry_if_exception_type, stop_when_event_set, wait_exponential

from contentq.bot.core import AdminBot
from contentq.clock import iso
from contentq.errors import ConfigError, ContentqError
from contentq.integrations.telegram.access import lend_gateways
from contentq.integrations.telegram.bot_gateway import BotAccount, BotGateway
from contentq.ops import bot_alive as alive
from contentq.redact import redact
from contentq.runtime.context import Runtime
from contentq.runtime.hosting import Hosted

log = logging.getLogger("contentq.bot")


def check_settings(runtime: Runtime) -> None:
    settings = runtime.settings
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        raise ConfigError("CONTENTQ_BOT_TOKEN is not set: create the bot with @BotFather (docs/bot.md)")
    if not settings.bot_admin_ids:
        raise ConfigError(
            "CONTENTQ_BOT_ADMINS is empty: give the Telegram user ids the bot obeys, comma-separated (docs/bot.md)"
        )


def login(gateway: BotGateway, stop: threading.Event) -> BotAccount:
    """Log in, waiting out an unreachable Telegram (exponential, at most a minute between tries)."""

    @retry(
        retry=retry_if_exception_type(ConnectionError),
        wait=wait_exponential(multiplier=1, max=60),
        stop=stop_when_event_set(stop),
        sleep=lambda seconds: None if stop.wait(seconds) else None,  # a stop ends the wait at once
        reraise=True,
        before_sleep=lambda state: log.warning(
            "bot: Telegram unreachable (%s); trying again", state.outcome.exception() if state.outcome else "?"
        ),  # fmt: skip
    )
    def attempt() -> BotAccount:
        return gateway.start()

    try:
        return attempt()
    except (errors.AccessTokenInvalidError, errors.AccessTokenExpiredError, errors.AuthKeyUnregisteredError):
        raise ConfigError(
            "Telegram refuses CONTENTQ_BOT_TOKEN: copy the token again from @BotFather (/mybots → API Token; "
            "/revoke makes a new one) into .env"
        ) from None


def serve(runtime: Runtime, gateway: BotGateway, stop: threading.Event, *, tick: float = 1.0) -> AdminBot:
    """Run the bot until `stop` is set; returns it (tests look at it)."""
    check_settings(runtime)
    account = login(gateway, stop)
    bot = AdminBot(runtime, gateway, username=account.username)
    log.info("bot: logged in as @%s; admins %s; chats %s", account.username, sorted(bot.admins), bot.chats)
    bot.startup()
    last_tick = last_beat = 0.0
    since = iso()
    try:
        for event in gateway.updates(tick=tick):
            if stop.is_set():
                break
            try:
                if event is not None:
                    bot.handle(event)
                if event is None or time.monotonic() - last_tick >= tick:
                    last_tick = time.monotonic()
                    bot.tick()
                if time.monotonic() - last_beat >= alive.BEAT_SECONDS:  # `contentq health` sees it run
                    last_beat = time.monotonic()
                    try:
                        alive.beat(runtime.redis, account.username, since)
                    except (redis.ConnectionError, redis.TimeoutError) as exc:  # health says no beat: enough
                        log.warning("bot: heartbeat not written (Redis: %s)", redact(str(exc)))
            except ContentqError as exc:  # Redis or SQLite away for a moment: the next update or tick tries again
                log.warning("bot: %s", redact(str(exc)))
            except Exception:  # noqa: BLE001 - one update must not stop the bot
                log.exception("bot: an update could not be handled")
    finally:
        with contextlib.suppress(Exception):  # Redis away: the beat expires by itself
            alive.stopped(runtime.redis)
    return bot


# hosted by a worker (the compact layout: `contentq worker --host bot`) ----------------------------------


class HostedBot:
    """`contentq bot` in a thread of a worker: a runtime of its own (database and Redis connections) with the
    worker's Telegram clients lent for its alerts (one session, one client), and the bot's own client."""

    def __init__(self, owner: Runtime) -> None:
        self.owner = owner
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from contentq.integrations.telegram.bot_client import build_bot_gateway

        runtime = Runtime(self.owner.settings)
        lend_gateways(self.owner, runtime)
        try:
            gateway = build_bot_gateway(runtime.settings)
            try:
                serve(runtime, gateway, self._stop)
            finally:
                gateway.close()
        except ContentqError as exc:  # settings the operator must fix: said once a try, the worker goes on
            log.error("bot: %s", redact(str(exc)))
        finally:
            runtime.close()
        if self._stop.is_set():
            log.info("bot stopped")


def hosted_bot(owner: Runtime) -> Hosted:
    return Hosted("bot", lambda: HostedBot(owner))
