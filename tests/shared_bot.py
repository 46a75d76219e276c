"""A fake Telegram for the admin bot whose chats live in a SQLite file, so a supervised `contentq bot` (or the
Telegram worker hosting the bot) can use it and a bench or a test in another process can drive and read it.

tests/fake_bot.py is the scripted in-memory fake for tests that hold the bot in their own process; this one
keeps, in CONTENTQ_FAKE_BOT_DB, what the bot's chats show (its sends and edits, with their buttons), the
updates Telegram holds for the bot (presses and messages written by `press` and `say`, handed to the running
bot once, or to the next one that starts: its catch-up), the answers to presses, and every login with the pid of
the process that logged in. Like Telegram it raises Telethon's real error classes: a refused token
(AccessTokenInvalidError), a chat that blocked the bot (UserIsBlockedError), an empty or too long text, a too
long caption, a missing upload, an edit of a deleted message. Select it with
CONTENTQ_BOT_GATEWAY=tests.shared_bot:gateway_from_env (the production gateway factory setting).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telethon import errors

from contentq.integrations.telegram.bot_gateway import BotAccount, BotEvent, Button, IncomingMessage, Keyboard, Press
from contentq.integrations.telegram.formatting import html_to_entities
from contentq.integrations.telegram.gateway import OutgoingPart

BOT_ID = 424242
USERNAME = "contentq_shared_bot"
INVALID_TOKEN = "0:refused"
"""The token this Telegram refuses (AccessTokenInvalidError); any other logs in."""
TEXT_MAX, CAPTION_MAX = 4096, 1024
"""Telegram's limits on a message's text and a media caption (characters, without the formatting)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS chat (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chat INTEGER NOT NULL, html TEXT NOT NULL, buttons TEXT NOT NULL,
    media TEXT NOT NULL DEFAULT '[]', reply_to INTEGER, force_reply INTEGER NOT NULL DEFAULT 0,
    from_bot INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, edits INTEGER NOT NULL DEFAULT 0, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, chat INTEGER NOT NULL, sender INTEGER NOT NULL,
    message_id INTEGER NOT NULL, query_id INTEGER, data BLOB, text TEXT, html TEXT, reply_to INTEGER,
    taken_by INTEGER
);
CREATE TABLE IF NOT EXISTS answers (query_id INTEGER NOT NULL, text TEXT NOT NULL, alert INTEGER NOT NULL, at REAL);
CREATE TABLE IF NOT EXISTS logins (id INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS blocked (chat INTEGER PRIMARY KEY);
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    return conn


@dataclass(frozen=True)
class ChatMessage:
    """A message as the chat shows it."""

    id: int
    chat: int
    html: str
    buttons: Keyboard
    media: list[str]
    reply_to: int | None
    force_reply: bool
    from_bot: bool
    deleted: bool
    edits: int

    def labels(self) -> list[str]:
        return [b.text for row in self.buttons for b in row]


def _keyboard(buttons: Keyboard | None) -> str:
    return json.dumps([[[b.text, b.data.hex()] for b in row] for row in buttons or []])


def _buttons(text: str) -> Keyboard:
    return [[Button(label, bytes.fromhex(data)) for label, data in row] for row in json.loads(text)]


def _plain_length(html: str) -> int:
    return len(html_to_entities(html)[0])


class SharedBot:
    """The BotGateway over the file; one per process (its connection serialised by a lock: a Telegram worker
    hosting the bot may call it from more than one thread)."""

    def __init__(self, path: Path, token: str = "") -> None:
        self.path = path
        self.token = token
        self.conn = connect(path)
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._lock, self.conn:
            return self.conn.execute(sql, params)

    def _new(self, chat_id: int, html: str, *, buttons: Keyboard | None = None, media: list[str] | None = None,
             reply_to: int | None = None, force_reply: bool = False) -> int:  # fmt: skip
        with self._lock:
            if self.conn.execute("SELECT 1 FROM blocked WHERE chat = ?", (chat_id,)).fetchone():
                raise errors.UserIsBlockedError(request=None)
            with self.conn:
                cursor = self.conn.execute(
                    "INSERT INTO chat (chat, html, buttons, media, reply_to, force_reply, from_bot, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                    (chat_id, html, _keyboard(buttons), json.dumps(media or []), reply_to, int(force_reply),
                     time.time()),
                )  # fmt: skip
        return int(cursor.lastrowid or 0)

    # -- BotGateway ------------------------------------------------------------------------------------------

    def start(self) -> BotAccount:
        if self.token == INVALID_TOKEN:
            raise errors.AccessTokenInvalidError(request=None)
        self._closed.clear()
        self._write("INSERT INTO logins (pid, at) VALUES (?, ?)", (os.getpid(), time.time()))
        return BotAccount(BOT_ID, USERNAME, "contentq shared bot")

    def send_text(
        self, chat_id: int, html: str, *, buttons: Keyboard | None = None, reply_to: int | None = None,
        force_reply: bool = False,
    ) -> int:  # fmt: skip
        length = _plain_length(html)
        if not length:
            raise errors.MessageEmptyError(request=None)
        if length > TEXT_MAX:
            raise errors.MessageTooLongError(request=None)
        return self._new(chat_id, html, buttons=buttons, reply_to=reply_to, force_reply=force_reply)

    def send_part(self, chat_id: int, part: OutgoingPart) -> list[int]:
        if not part.media:
            return [self.send_text(chat_id, part.html)]
        if _plain_length(part.html) > CAPTION_MAX:
            raise errors.MediaCaptionTooLongError(request=None)
        for item in part.media:
            if not item.path.exists():
                raise errors.FilePartMissingError(request=None, capture=0)
        return [self._new(chat_id, part.html if i == 0 else "", media=[item.kind]) for i, item in enumerate(part.media)]

    def edit_text(self, chat_id: int, message_id: int, html: str, *, buttons: Keyboard | None = None) -> None:
        if not _plain_length(html):
            raise errors.MessageEmptyError(request=None)
        with self._lock:
            row = self.conn.execute(
                "SELECT deleted FROM chat WHERE chat = ? AND id = ? AND from_bot = 1", (chat_id, message_id)
            ).fetchone()
            if row is None or row[0]:
                raise errors.MessageIdInvalidError(request=None)
            with self.conn:  # the same text and buttons again: Telegram's MessageNotModified, which the Protocol hides
                self.conn.execute(
                    "UPDATE chat SET html = ?, buttons = ?, edits = edits + 1 WHERE id = ?",
                    (html, _keyboard(buttons), message_id),
                )

    def delete(self, chat_id: int, message_ids: list[int]) -> None:
        with self._lock, self.conn:
            self.conn.executemany(
                "UPDATE chat SET deleted = 1 WHERE chat = ? AND id = ?", [(chat_id, i) for i in message_ids]
            )

    def answer(self, query_id: int, text: str = "", *, alert: bool = False) -> None:
        self._write("INSERT INTO answers (query_id, text, alert, at) VALUES (?, ?, ?, ?)",
                    (query_id, text[:200], int(alert), time.time()))  # fmt: skip

    def updates(self, *, tick: float = 1.0) -> Iterator[BotEvent | None]:
        """What the bench or a test wrote, oldest first, each handed to one bot once; the file is read every
        `tick` seconds (the real gateway is woken by Telegram's socket and yields None each tick too)."""
        while not self._closed.is_set():
            event = self._take()
            if event is None:
                self._closed.wait(tick)
            yield event

    def _take(self) -> BotEvent | None:
        with self._lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute(
                "SELECT seq, kind, chat, sender, message_id, query_id, data, text, html, reply_to FROM updates"
                " WHERE taken_by IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            self.conn.execute("UPDATE updates SET taken_by = ? WHERE seq = ?", (os.getpid(), row[0]))
        _, kind, chat, sender, message_id, query_id, data, text, html, reply_to = row
        if kind == "press":
            return Press(query_id, chat, sender, message_id, bytes(data), sender_name=f"user {sender}")
        return IncomingMessage(chat, sender, message_id, html, text, reply_to=reply_to, sender_name=f"user {sender}")

    def close(self) -> None:
        self._closed.set()


def gateway_from_env(settings: Any) -> SharedBot:
    """CONTENTQ_BOT_GATEWAY=tests.shared_bot:gateway_from_env, the file in CONTENTQ_FAKE_BOT_DB."""
    token = settings.bot_token.get_secret_value() if settings.bot_token is not None else ""
    return SharedBot(Path(os.environ["CONTENTQ_FAKE_BOT_DB"]), token)


# -- what users do, and what the chats show (tests and benches, from any process) ------------------------------


def _read(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def messages(path: Path, chat: int, *, with_deleted: bool = False) -> list[ChatMessage]:
    """The chat's messages, oldest first (the bot's and the users')."""
    rows = _read(path, "SELECT id, chat, html, buttons, media, reply_to, force_reply, from_bot, deleted, edits"
                       " FROM chat WHERE chat = ? ORDER BY id", (chat,))  # fmt: skip
    out = [ChatMessage(r[0], r[1], r[2], _buttons(r[3]), json.loads(r[4]), r[5], bool(r[6]), bool(r[7]), bool(r[8]),
                       r[9]) for r in rows]  # fmt: skip
    return [m for m in out if with_deleted or not m.deleted]


def message(path: Path, chat: int, message_id: int) -> ChatMessage:
    for m in messages(path, chat, with_deleted=True):
        if m.id == message_id:
            return m
    raise LookupError(f"no message {message_id} in chat {chat}")


def press(path: Path, user: int, chat: int, message_id: int, label: str) -> int:
    """`user` presses the button whose label contains `label` on a message of the bot; the query id."""
    card = message(path, chat, message_id)
    found = [b for row in card.buttons for b in row if label in b.text]
    if not found:
        raise LookupError(f"no button {label!r} on message {message_id}: {card.labels()}")
    query_id = secrets.randbits(62)  # Telegram's query ids are random 64-bit numbers
    conn = connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO updates (kind, chat, sender, message_id, query_id, data) VALUES ('press', ?, ?, ?, ?, ?)",
                (chat, user, message_id, query_id, found[0].data),
            )
    finally:
        conn.close()
    return query_id


def say(path: Path, user: int, chat: int, text: str, *, reply_to: int | None = None) -> int:
    """`user` sends `text` (plain) to the chat, answering `reply_to`; its message id."""
    conn = connect(path)
    try:
        with conn:
            cursor = conn.execute(
                "INSERT INTO chat (chat, html, buttons, reply_to, from_bot, at) VALUES (?, ?, '[]', ?, 0, ?)",
                (chat, text, reply_to, time.time()),
            )
            message_id = int(cursor.lastrowid or 0)
            conn.execute(
                "INSERT INTO updates (kind, chat, sender, message_id, text, html, reply_to)"
                " VALUES ('message', ?, ?, ?, ?, ?, ?)",
                (chat, user, message_id, text, text, reply_to),
            )
    finally:
        conn.close()
    return message_id


def block(path: Path, chat: int) -> None:
    """The chat's user blocked the bot (or never started it): sends there raise UserIsBlockedError."""
    conn = connect(path)
    try:
        with conn:
            conn.execute("INSERT OR IGNORE INTO blocked (chat) VALUES (?)", (chat,))
    finally:
        conn.close()


def answer_to(path: Path, query_id: int) -> tuple[str, bool] | None:
    rows = _read(path, "SELECT text, alert FROM answers WHERE query_id = ? ORDER BY rowid DESC LIMIT 1", (query_id,))
    return (rows[0][0], bool(rows[0][1])) if rows else None


def logins(path: Path) -> list[int]:
    """The pid of every process that logged in as the bot, in order."""
    return [r[0] for r in _read(path, "SELECT pid FROM logins ORDER BY id")]


def pending(path: Path) -> int:
    """Updates no bot has taken yet."""
    return int(_read(path, "SELECT COUNT(*) FROM updates WHERE taken_by IS NULL")[0][0])
