"""The Telethon implementation of the BotGateway: the admin bot logged in with its token.

One client on a private event-loop thread (client.EventLoopThread), like the user-account gateway. Its session is
a Telethon SQLite session file (settings.bot_session_path, mode 0600), not a StringSession: Telethon saves the
update state (pts, qts, date) there, and with `catch_up=True` it asks Telegram for the difference since that state
when it connects, so presses and replies sent while the bot was down are handed to the handlers on start
(Telethon's `catch_up`, which only works from a state kept between runs). A watchdog on the loop reconnects
after a lost connection and catches up again.

Telethon's events are turned into the gateway's dataclasses here (`to_message`, `to_press`), so the bot's logic
never sees a Telethon object; requests are plain Telethon calls (`send_message`, `edit_message`, the raw
`SendMultiMediaRequest` for albums through client.build_send_request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pkgutil
import queue
import secrets
import stat
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from telethon import TelegramClient, errors, events
from telethon.tl import functions
from telethon.tl import types as tl
from telethon.tl.custom import Button as TelethonButton

from contentq.errors import ConfigError
from contentq.integrations.telegram.bot_gateway import (
    BotAccount,
    BotEvent,
    Button,
    IncomingMessage,
    Keyboard,
    Press,
    Status,
)
from contentq.integrations.telegram.client import (
    EventLoopThread,
    build_send_request,
    register_upload,
    require_api,
    sent_message_ids,
)
from contentq.integrations.telegram.formatting import entities_to_html, html_to_entities
from contentq.integrations.telegram.gateway import OutgoingPart
from contentq.redact import register_secret
from contentq.settings import Settings

T = TypeVar("T")

log = logging.getLogger("contentq.bot.telegram")

UPLOAD_TIMEOUT_FACTOR = 5
"""Uploads (a card's media) may take this many times settings.tg_timeout."""


def bot_token(settings: Settings) -> str:
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        raise ConfigError(
            "CONTENTQ_BOT_TOKEN is not set: create a bot with @BotFather (/newbot) and put its token in .env "
            "(docs/bot.md)"
        )
    token = settings.bot_token.get_secret_value().strip()
    register_secret(token)
    return token


def private_session_file(path: Path) -> str:
    """The session file's name for Telethon (it adds '.session'), created private: it holds the bot's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    elif stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)
    return str(path)


def make_bot_client(settings: Settings) -> TelegramClient:
    api_id, api_hash = require_api(settings)
    return TelegramClient(
        private_session_file(settings.bot_session_path),
        api_id,
        api_hash,
        device_model=settings.tg_device_model,
        system_version=settings.tg_system_version,
        app_version=settings.tg_app_version,
        flood_sleep_threshold=settings.tg_flood_sleep_threshold,
        timeout=min(settings.tg_timeout, 30),
        connection_retries=5,
        request_retries=3,
        catch_up=True,  # what arrived while the bot was down, from the update state saved in the session
    )


# -- Telethon objects to the gateway's dataclasses ----------------------------------------------------------


def _name(sender: Any) -> str:
    if sender is None:
        return ""
    parts = [getattr(sender, "first_name", None), getattr(sender, "last_name", None)]
    name = " ".join(p for p in parts if p) or getattr(sender, "title", None) or ""
    username = getattr(sender, "username", None)
    return f"{name} (@{username})" if username and name else (f"@{username}" if username else str(name))


def to_message(message: Any, sender: Any = None) -> IncomingMessage | None:
    """A Telethon Message (from events.NewMessage) as an IncomingMessage; None for one without a sender or
    text (a service message, a sticker)."""
    sender_id = getattr(message, "sender_id", None)
    text = getattr(message, "message", None) or ""
    if sender_id is None or getattr(message, "out", False):
        return None
    reply = getattr(message, "reply_to", None)
    return IncomingMessage(
        chat_id=int(message.chat_id),
        sender_id=int(sender_id),
        message_id=int(message.id),
        html=entities_to_html(text, getattr(message, "entities", None)),
        text=text,
        reply_to=getattr(reply, "reply_to_msg_id", None),
        sender_name=_name(sender),
    )


def to_press(event: Any, sender: Any = None) -> Press:
    """A Telethon events.CallbackQuery.Event as a Press."""
    return Press(
        query_id=int(event.id),
        chat_id=int(event.chat_id),
        sender_id=int(event.sender_id),
        message_id=int(event.message_id),
        data=bytes(event.data or b""),
        sender_name=_name(sender),
    )


def reply_markup(buttons: Keyboard | None, force_reply: bool = False) -> Any:
    """The raw markup: rows of callback buttons (Telethon's `Button.inline`), or a ForceReply asking for an
    answer."""
    if force_reply:
        return tl.ReplyKeyboardForceReply(selective=True)
    if not buttons:
        return None
    rows = [tl.KeyboardInlineButtonRow(buttons=[TelethonButton.inline(b.text, b.data) for b in row]) for row in buttons]
    return tl.ReplyInlineMarkup(rows=rows)


def buttons_of(markup: Any) -> Keyboard:
    """The inverse of reply_markup for inline buttons (tests, and reading a card back)."""
    rows = getattr(markup, "rows", None) or []
    return [[Button(b.text, bytes(b.type.data)) for b in row.buttons] for row in rows]


# -- the gateway ---------------------------------------------------------------------------------------------


class TelethonBotGateway:
    """BotGateway over one Telethon bot client; see the module docstring."""

    def __init__(self, settings: Settings, client_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._factory = client_factory or (lambda: make_bot_client(settings))
        self._client: Any = None
        self._runner: EventLoopThread | None = None
        self._lock = threading.Lock()
        self._feed: queue.Queue[BotEvent] = queue.Queue()
        self._stopped = threading.Event()
        self._watchdog: asyncio.Task[None] | None = None

    def _run(self, factory: Callable[[Any], Awaitable[T]], timeout: float | None = None) -> T:
        with self._lock:
            if self._runner is None:
                self._runner = EventLoopThread("contentq-bot")
        runner = self._runner

        async def call() -> T:
            if self._client is None:
                self._client = self._factory()
            if not self._client.is_connected():
                await self._client.connect()
            return await factory(self._client)

        return runner.run(call(), timeout or self.settings.tg_timeout)

    def start(self) -> BotAccount:
        token = bot_token(self.settings)

        async def login(client: Any) -> BotAccount:
            client.add_event_handler(self._on_message, events.NewMessage(incoming=True))
            client.add_event_handler(self._on_press, events.CallbackQuery())
            await client.start(bot_token=token)  # signs in once; later starts reuse the session file
            me = await client.get_me()
            if not getattr(me, "bot", False):
                raise ConfigError("the Telegram session of `contentq bot` is not a bot's: delete bot.session")
            self._watchdog = asyncio.get_running_loop().create_task(self._keep_connected(client))
            return BotAccount(int(me.id), me.username, _name(me))

        return self._run(login, self.settings.tg_timeout * 2)

    async def _on_message(self, event: Any) -> None:
        sender = await event.get_sender()
        message = to_message(event.message, sender)
        if message is not None:
            self._feed.put(message)

    async def _on_press(self, event: Any) -> None:
        self._feed.put(to_press(event, await event.get_sender()))

    async def _keep_connected(self, client: Any) -> None:
        delay = 1.0
        while not self._stopped.is_set():
            await asyncio.sleep(1.0)
            if client.is_connected():
                continue
            self._feed.put(Status("disconnected", "Telethon lost the connection"))
            while not self._stopped.is_set():
                try:
                    await client.connect()
                    await client.catch_up()  # what arrived while disconnected
                    break
                except (OSError, TimeoutError, ConnectionError) as exc:
                    log.warning("bot reconnect failed (%s); next try in %.0f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
            delay = 1.0
            self._feed.put(Status("connected"))

    async def _peer(self, client: Any, chat_id: int) -> Any:
        try:
            return await client.get_input_entity(chat_id)
        except ValueError:  # never seen by this session, and Telegram does not know it either
            raise errors.PeerIdInvalidError(request=None) from None

    def send_text(
        self, chat_id: int, html: str, *, buttons: Keyboard | None = None, reply_to: int | None = None,
        force_reply: bool = False,
    ) -> int:  # fmt: skip
        async def send(client: Any) -> int:
            text, entities = html_to_entities(html)
            request = functions.messages.SendMessageRequest(
                peer=await self._peer(client, chat_id), message=text, entities=entities or None,
                random_id=secrets.randbits(63), no_webpage=True, reply_markup=reply_markup(buttons, force_reply),
                reply_to=tl.InputReplyToMessage(reply_to) if reply_to else None,
            )  # fmt: skip
            result = await client(request)
            return sent_message_ids(result, [request.random_id])[0]

        return self._run(send)

    def send_part(self, chat_id: int, part: OutgoingPart) -> list[int]:
        async def send(client: Any) -> list[int]:
            peer = await self._peer(client, chat_id)
            media = [await register_upload(client, peer, item) for item in part.media]
            random_ids = [secrets.randbits(63) for _ in range(max(1, len(part.media)))]
            result = await client(build_send_request(peer, part, random_ids, media))
            return sent_message_ids(result, random_ids)

        return self._run(send, self.settings.tg_timeout * (UPLOAD_TIMEOUT_FACTOR if part.media else 1))

    def edit_text(self, chat_id: int, message_id: int, html: str, *, buttons: Keyboard | None = None) -> None:
        async def edit(client: Any) -> None:
            text, entities = html_to_entities(html)
            request = functions.messages.EditMessageRequest(
                peer=await self._peer(client, chat_id), id=message_id, message=text, entities=entities or None,
                no_webpage=True, reply_markup=reply_markup(buttons),
            )  # fmt: skip
            with contextlib.suppress(errors.MessageNotModifiedError):  # already reads so: a press seen twice
                await client(request)

        self._run(edit)

    def delete(self, chat_id: int, message_ids: list[int]) -> None:
        async def delete(client: Any) -> None:
            await client.delete_messages(await self._peer(client, chat_id), message_ids)

        self._run(delete)

    def answer(self, query_id: int, text: str = "", *, alert: bool = False) -> None:
        async def answer(client: Any) -> None:
            request = functions.messages.SetBotCallbackAnswerRequest(
                query_id=query_id, cache_time=0, alert=alert or None, message=text[:200] or None
            )
            with contextlib.suppress(errors.QueryIdInvalidError):  # a press from before a restart: too old
                await client(request)

        self._run(answer)

    def updates(self, *, tick: float = 1.0) -> Iterator[BotEvent | None]:
        while not self._stopped.is_set():
            try:
                yield self._feed.get(timeout=tick)
            except queue.Empty:
                yield None

    def close(self) -> None:
        self._stopped.set()
        runner, self._runner = self._runner, None
        if runner is None:
            return
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:

            async def cancel() -> None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog

            with contextlib.suppress(Exception):
                runner.run(cancel(), 5)
        if self._client is not None:
            with contextlib.suppress(Exception):
                runner.run(self._client.disconnect(), 10)  # saves the update state for the next catch-up
        self._client = None
        runner.stop()


def build_bot_gateway(settings: Settings) -> Any:
    """The bot's gateway: Telethon, or CONTENTQ_BOT_GATEWAY='module:factory' (a stand-in for benches, demos)."""
    if settings.bot_gateway:
        return pkgutil.resolve_name(settings.bot_gateway)(settings)
    return cast(Any, TelethonBotGateway(settings))
