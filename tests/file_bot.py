"""A fake Telegram for the admin bot whose chats and updates live in a SQLite file, so a test can press a button
of a bot running in another process (a worker hosting it: `contentq worker --host bot`).

Select it with CONTENTQ_BOT_GATEWAY=tests.file_bot:bot_from_env and CONTENTQ_FAKE_BOT_DB=<file>. What the bot
sends is kept per chat with its buttons; `press` queues a press of a button for the bot's `updates`; `answers`
are what the bot answered. Text only (what an approval card and its answer need).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contentq.integrations.telegram.bot_gateway import BotAccount, BotEvent, Button, Keyboard, Press
from contentq.integrations.telegram.gateway import OutgoingPart

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chat INTEGER NOT NULL, html TEXT NOT NULL, buttons TEXT NOT NULL,
    reply_to INTEGER, deleted INTEGER NOT NULL DEFAULT 0, edits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, query_id INTEGER NOT NULL, chat INTEGER NOT NULL, sender INTEGER NOT NULL,
    message_id INTEGER NOT NULL, data BLOB NOT NULL, taken INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS answers (query_id INTEGER NOT NULL, text TEXT NOT NULL, alert INTEGER NOT NULL);
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    return conn


def _keyboard(buttons: Keyboard | None) -> str:
    return json.dumps([[{"text": b.text, "data": b.data.hex()} for b in row] for row in buttons or []])


class FileBot:
    """The BotGateway over the file."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path)
        self.lock = threading.Lock()
        self.running = False

    def start(self) -> BotAccount:
        self.running = True
        return BotAccount(424242, "contentq_file_bot", "contentq file bot")

    def send_text(
        self, chat_id: int, html: str, *, buttons: Keyboard | None = None, reply_to: int | None = None,
        force_reply: bool = False,
    ) -> int:  # fmt: skip
        with self.lock:
            cursor = self.conn.execute(
                "INSERT INTO messages (chat, html, buttons, reply_to) VALUES (?, ?, ?, ?)",
                (chat_id, html, _keyboard(buttons), reply_to),
            )
            return int(cursor.lastrowid or 0)

    def send_part(self, chat_id: int, part: OutgoingPart) -> list[int]:
        return [self.send_text(chat_id, part.html or "(media)")]

    def edit_text(self, chat_id: int, message_id: int, html: str, *, buttons: Keyboard | None = None) -> None:
        with self.lock:
            self.conn.execute(
                "UPDATE messages SET html = ?, buttons = ?, edits = edits + 1 WHERE chat = ? AND id = ?",
                (html, _keyboard(buttons), chat_id, message_id),
            )

    def delete(self, chat_id: int, message_ids: list[int]) -> None:
        with self.lock:
            self.conn.executemany(
                "UPDATE messages SET deleted = 1 WHERE chat = ? AND id = ?", [(chat_id, i) for i in message_ids]
            )

    def answer(self, query_id: int, text: str = "", *, alert: bool = False) -> None:
        with self.lock:
            self.conn.execute("INSERT INTO answers (query_id, text, alert) VALUES (?, ?, ?)", (query_id, text, alert))

    def updates(self, *, tick: float = 1.0) -> Iterator[BotEvent | None]:
        while self.running:
            with self.lock:
                row = self.conn.execute(
                    "SELECT seq, query_id, chat, sender, message_id, data FROM updates WHERE taken = 0 ORDER BY seq"
                ).fetchone()
                if row is not None:
                    self.conn.execute("UPDATE updates SET taken = 1 WHERE seq = ?", (row[0],))
            if row is None:
                time.sleep(min(tick, 0.2))
                yield None
                continue
            _, query_id, chat, sender, message_id, data = row
            yield Press(query_id, chat, sender, message_id, bytes(data), sender_name=f"user {sender}")

    def close(self) -> None:
        self.running = False
        with self.lock:
            self.conn.close()


def bot_from_env(settings: Any) -> FileBot:
    return FileBot(Path(os.environ["CONTENTQ_FAKE_BOT_DB"]))


# -- the test's side -----------------------------------------------------------------------------------------


def messages(path: Path, chat: int) -> list[dict[str, Any]]:
    """The bot's messages not deleted in `chat`, oldest first, buttons as [[Button]]."""
    conn = connect(path)
    try:
        rows = conn.execute(
            "SELECT id, html, buttons, edits FROM messages WHERE chat = ? AND deleted = 0 ORDER BY id", (chat,)
        ).fetchall()
    finally:
        conn.close()
    return [
        {"id": i, "html": html, "edits": edits,
         "buttons": [[Button(b["text"], bytes.fromhex(b["data"])) for b in row] for row in json.loads(buttons)]}
        for i, html, buttons, edits in rows
    ]  # fmt: skip


def press(path: Path, user: int, chat: int, message: dict[str, Any], label: str) -> int:
    """`user` presses the button of `message` whose label contains `label`; the press's query id."""
    (button,) = [b for row in message["buttons"] for b in row if label in b.text]
    query_id = secrets.randbits(62)
    conn = connect(path)
    try:
        conn.execute(
            "INSERT INTO updates (query_id, chat, sender, message_id, data) VALUES (?, ?, ?, ?, ?)",
            (query_id, chat, user, message["id"], button.data),
        )
    finally:
        conn.close()
    return query_id


def answers(path: Path, query_id: int) -> list[tuple[str, bool]]:
    conn = connect(path)
    try:
        rows = conn.execute("SELECT text, alert FROM answers WHERE query_id = ?", (query_id,)).fetchall()
    finally:
        conn.close()
    return [(text, bool(alert)) for text, alert in rows]
