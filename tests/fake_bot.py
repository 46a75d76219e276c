"""A scripted Telegram for the admin bot, behind the BotGateway Protocol, raising Telethon's real error classes.

It keeps each chat's messages (text, media, buttons, the message replied to) as Telegram would show them, and
the updates not yet taken by a bot, like Telegram's update queue for a bot: presses and messages made while no
bot runs are handed to the next one that starts (its catch-up). Script users pressing buttons and replying,
queue errors for the next calls of a method, and look at what the chats show.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from telethon import errors

from contentq.integrations.telegram.bot_gateway import (
    BotAccount,
    BotEvent,
    Button,
    IncomingMessage,
    Keyboard,
    Press,
    Status,
)
from contentq.integrations.telegram.gateway import OutgoingPart


@dataclass
class ChatMessage:
    id: int
    html: str
    media: list[str] = field(default_factory=list)
    """The media kinds of the message (one per item of an album)."""
    grouped: bool = False
    """An item of an album sent as one request."""
    buttons: Keyboard = field(default_factory=list)
    reply_to: int | None = None
    force_reply: bool = False
    deleted: bool = False
    edits: int = 0
    from_bot: bool = True

    def button(self, label: str) -> Button:
        """The button whose label contains `label`."""
        for row in self.buttons:
            for button in row:
                if label in button.text:
                    return button
        raise AssertionError(f"no button {label!r} on message {self.id}: {[b.text for r in self.buttons for b in r]}")


@dataclass
class FakeBot:
    username: str = "contentq_test_bot"
    token_valid: bool = True
    chats: dict[int, list[ChatMessage]] = field(default_factory=lambda: defaultdict(list))
    answers: list[tuple[int, str, bool]] = field(default_factory=list)
    """(query id, text, alert) of every answered press."""
    starts: int = 0
    blocked: set[int] = field(default_factory=set)
    """Chats whose user has not started the bot (or blocked it): sends there raise UserIsBlockedError."""
    _pending: deque[BotEvent] = field(default_factory=deque)
    _live: queue.Queue[BotEvent | None] = field(default_factory=queue.Queue)
    _running: bool = False
    _errors: dict[str, deque[BaseException]] = field(default_factory=lambda: defaultdict(deque))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _queries: itertools.count[int] = field(default_factory=lambda: itertools.count(secrets.randbits(62)))
    """Telegram's query ids are random 64-bit numbers: a new fake never repeats an earlier one's."""
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- scripting -------------------------------------------------------------------------------------------

    def fail_next(self, method: str, *excs: BaseException) -> None:
        self._errors[method].extend(excs)

    def _maybe_fail(self, method: str) -> None:
        if self._errors[method]:
            raise self._errors[method].popleft()

    def _deliver(self, event: BotEvent) -> None:
        with self._lock:
            if self._running:
                self._live.put(event)
            else:
                self._pending.append(event)  # Telegram keeps it for the bot's next getDifference

    def press(self, user: int, chat: int, message_id: int, label: str, *, data: bytes | None = None) -> Press:
        """`user` presses the button labelled `label` on a message (or sends `data` of their own making)."""
        message = self.message(chat, message_id)
        payload = data if data is not None else message.button(label).data
        event = Press(next(self._queries), chat, user, message_id, payload, sender_name=f"user {user}")
        self._deliver(event)
        return event

    def redeliver(self, event: BotEvent) -> None:
        """The same update once more (Telegram may hand an update over again after a reconnect)."""
        self._deliver(event)

    def say(self, user: int, chat: int, text: str, *, html: str | None = None, reply_to: int | None = None) -> int:
        with self._lock:
            message_id = next(self._ids)
            self.chats[chat].append(ChatMessage(message_id, html or text, reply_to=reply_to, from_bot=False))
        self._deliver(IncomingMessage(chat, user, message_id, html if html is not None else text, text,
                                      reply_to=reply_to, sender_name=f"user {user}"))  # fmt: skip
        return message_id

    def message(self, chat: int, message_id: int) -> ChatMessage:
        for message in self.chats[chat]:
            if message.id == message_id:
                return message
        raise AssertionError(f"no message {message_id} in chat {chat}")

    def visible(self, chat: int) -> list[ChatMessage]:
        return [m for m in self.chats[chat] if not m.deleted and m.from_bot]

    def with_buttons(self, chat: int) -> list[ChatMessage]:
        return [m for m in self.visible(chat) if m.buttons]

    def drain(self) -> list[BotEvent]:
        """What a running bot has not taken yet (tests that drive AdminBot.handle themselves)."""
        out: list[BotEvent] = []
        with self._lock:
            out.extend(self._pending)
            self._pending.clear()
        while True:
            try:
                item = self._live.get_nowait()
            except queue.Empty:
                return out
            if item is not None:
                out.append(item)

    def drop_connection(self) -> None:
        self._live.put(Status("disconnected", "connection reset by peer"))
        self._live.put(Status("connected"))

    # -- BotGateway ------------------------------------------------------------------------------------------

    def start(self) -> BotAccount:
        self._maybe_fail("start")
        if not self.token_valid:
            raise errors.AccessTokenInvalidError(request=None)
        with self._lock:
            self.starts += 1
            self._running = True
            while self._pending:  # catch-up: what arrived while no bot ran comes first
                self._live.put(self._pending.popleft())
        return BotAccount(424242, self.username, "contentq test bot")

    def _new(self, chat: int, message: ChatMessage) -> int:
        if chat in self.blocked:
            raise errors.UserIsBlockedError(request=None)
        self.chats[chat].append(message)
        return message.id

    def send_text(
        self, chat_id: int, html: str, *, buttons: Keyboard | None = None, reply_to: int | None = None,
        force_reply: bool = False,
    ) -> int:  # fmt: skip
        self._maybe_fail("send_text")
        if not html.strip():
            raise errors.MessageEmptyError(request=None)
        with self._lock:
            return self._new(chat_id, ChatMessage(next(self._ids), html, buttons=list(buttons or []),
                                                  reply_to=reply_to, force_reply=force_reply))  # fmt: skip

    def send_part(self, chat_id: int, part: OutgoingPart) -> list[int]:
        self._maybe_fail("send_part")
        with self._lock:
            if not part.media:
                return [self._new(chat_id, ChatMessage(next(self._ids), part.html))]
            ids = []
            for index, item in enumerate(part.media):
                if not item.path.exists():
                    raise errors.FilePartMissingError(request=None, capture=0)
                caption = part.html if index == 0 else ""
                ids.append(self._new(chat_id, ChatMessage(next(self._ids), caption, media=[item.kind],
                                                          grouped=len(part.media) > 1)))  # fmt: skip
            return ids

    def edit_text(self, chat_id: int, message_id: int, html: str, *, buttons: Keyboard | None = None) -> None:
        self._maybe_fail("edit_text")
        with self._lock:
            message = self.message(chat_id, message_id)
            if message.deleted:
                raise errors.MessageIdInvalidError(request=None)
            message.html, message.buttons = html, list(buttons or [])
            message.edits += 1

    def delete(self, chat_id: int, message_ids: list[int]) -> None:
        self._maybe_fail("delete")
        with self._lock:
            for message_id in message_ids:
                self.message(chat_id, message_id).deleted = True

    def answer(self, query_id: int, text: str = "", *, alert: bool = False) -> None:
        self._maybe_fail("answer")
        self.answers.append((query_id, text, alert))

    def answer_to(self, event: Press) -> tuple[str, bool]:
        found = [(text, alert) for qid, text, alert in self.answers if qid == event.query_id]
        assert found, f"press {event.query_id} got no answer"
        return found[-1]

    def updates(self, *, tick: float = 1.0) -> Iterator[BotEvent | None]:
        while self._running:
            try:
                yield self._live.get(timeout=tick)
            except queue.Empty:
                yield None

    def close(self) -> None:
        with self._lock:
            self._running = False
            # updates not taken yet stay with Telegram for the next start
            while True:
                try:
                    item = self._live.get_nowait()
                except queue.Empty:
                    break
                if item is not None and not isinstance(item, Status):
                    self._pending.append(item)
        self._live.put(None)


def fake_bot_from_settings(settings: Any) -> FakeBot:
    """CONTENTQ_BOT_GATEWAY='tests.fake_bot:fake_bot_from_settings' (benches)."""
    return FakeBot()
