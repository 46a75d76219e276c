"""A fake Telegram whose channel state lives in a SQLite file shared by every process.

The in-process FakeTelegram forgets what was sent when its worker dies, so it cannot catch a double send
across a kill. This one keeps sent messages and used random ids in CONTENTQ_FAKE_TG_DB, and like Telegram
refuses a reused random id with RandomIdDuplicateError. Select it in workers with
CONTENTQ_TG_GATEWAY=tests.shared_telegram:gateway_from_env (the production gateway factory setting).

Faults, for kill tests: CONTENTQ_FAKE_TG_HANG=before_send|after_send makes this process's first send hang
(after writing CONTENTQ_FAKE_TG_MARKER) so the test can kill the worker there; CONTENTQ_FAKE_TG_SEND_DELAY
spreads each send over that many seconds (half before, half after Telegram "posts"), widening the window a
random kill can hit.

Per account: CONTENTQ_TG_GATEWAY=tests.shared_telegram:accounts_from_env gives one gateway per account, the
accounts named in CONTENTQ_FAKE_TG_LOGGED_OUT (comma-separated) logged out (every call: AuthKeyUnregisteredError).
One process may call it from several threads (a worker's jobs and the listener it hosts): calls take turns.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telethon import errors

from contentq.integrations.telegram.gateway import (
    Account,
    FetchedMessage,
    ListenUpdate,
    OutgoingPart,
    ResolvedChannel,
)
from contentq.routes import normalize_channel_ref

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, html TEXT NOT NULL, kind TEXT,
    grouped_id INTEGER, random_id INTEGER NOT NULL UNIQUE, at REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS admin (id INTEGER PRIMARY KEY AUTOINCREMENT, chat TEXT, text TEXT, at REAL);
CREATE TABLE IF NOT EXISTS donor (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, id INTEGER NOT NULL, html TEXT NOT NULL,
    at REAL NOT NULL, live INTEGER NOT NULL DEFAULT 0, UNIQUE (channel, id)
);
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    return conn


class SharedTelegram:
    def __init__(self, path: Path, *, hang: str = "", marker: Path | None = None, send_delay: float = 0.0) -> None:
        self.path = path
        self.conn = connect(path)
        self.hang = hang
        self.marker = marker
        self.send_delay = send_delay
        self.lock = threading.RLock()  # one connection, several threads of a process

    def _maybe_hang(self, when: str) -> None:
        if self.hang == when:
            self.hang = ""
            if self.marker is not None:
                self.marker.write_text(str(os.getpid()))
            time.sleep(3600)  # the test kills this worker here

    # The gateway Protocol -----------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        pass

    def reconnect(self) -> None:
        pass

    def account(self) -> Account:
        return Account(id=42, username="operator", name="Operator", phone="+10000000000", premium=False)

    def resolve(self, ref: str) -> ResolvedChannel:
        ref = normalize_channel_ref(ref)
        cid = sum(ref.encode()) + 10**9
        return ResolvedChannel(ref=ref, id=cid, access_hash=cid * 7, title=ref, username=ref.lstrip("@"))

    def fetch_messages(self, channel: ResolvedChannel, *, min_id: int, limit: int) -> list[FetchedMessage]:
        """The donor messages `post_donor` wrote, as Telegram pages them (see the gateway Protocol)."""
        order = "ASC" if min_id > 0 else "DESC"  # a first run takes the newest `limit`, later runs page forward
        with self.lock:
            rows = self.conn.execute(
                f"SELECT id, html, at FROM donor WHERE channel = ? AND id > ? ORDER BY id {order} LIMIT ?",
                (channel.ref, min_id, limit or -1),
            ).fetchall()
        return sorted((_message(r) for r in rows), key=lambda m: m.id)

    def listen(self, channels: list[ResolvedChannel], *, tick: float = 1.0) -> Iterator[ListenUpdate]:
        """The donor messages posted `live` after the listener connected, read from the file every `tick`
        seconds (the real gateway is woken by Telegram's socket; its watchdog wakes every tick too)."""
        wanted = {c.ref: c.id for c in channels}
        with self.lock:
            last = int(self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM donor").fetchone()[0])
        yield ListenUpdate("connected", received_at=time.time())
        while True:
            with self.lock:
                rows = self.conn.execute(
                    "SELECT seq, channel, id, html, at FROM donor WHERE seq > ? AND live = 1 ORDER BY seq", (last,)
                ).fetchall()
            if not rows:
                time.sleep(tick)
                yield ListenUpdate("idle", received_at=time.time())
                continue
            for seq, channel, msg_id, html, at in rows:
                last = seq
                if channel in wanted:
                    yield ListenUpdate("new", wanted[channel], (_message((msg_id, html, at)),), received_at=time.time())

    def download_media(self, channel: ResolvedChannel, message_id: int) -> bytes:
        raise errors.MessageIdInvalidError(request=None)

    def send(self, target: ResolvedChannel, part: OutgoingPart, random_ids: list[int]) -> list[int]:
        if part.media:
            raise NotImplementedError("the shared fake sends text only")
        self._maybe_hang("before_send")
        if self.send_delay:
            time.sleep(random.uniform(0, self.send_delay / 2))
        try:
            with self.lock, self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                cursor = self.conn.execute(
                    "INSERT INTO messages (target, html, random_id, at) VALUES (?, ?, ?, ?)",
                    (target.ref, part.html, random_ids[0], time.time()),
                )
                message_id = int(cursor.lastrowid or 0)
        except sqlite3.IntegrityError:
            raise errors.RandomIdDuplicateError(request=None) from None
        self._maybe_hang("after_send")
        if self.send_delay:
            time.sleep(random.uniform(0, self.send_delay / 2))
        return [message_id]

    def delete_messages(self, target: ResolvedChannel, message_ids: list[int]) -> None:
        with self.lock, self.conn:
            self.conn.executemany(
                "UPDATE messages SET deleted = 1 WHERE target = ? AND id = ?", [(target.ref, i) for i in message_ids]
            )

    def recent_messages(self, target: ResolvedChannel, limit: int = 20) -> list[FetchedMessage]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT id, html, at FROM messages WHERE target = ? AND deleted = 0 ORDER BY id DESC LIMIT ?",
                (target.ref, limit),
            ).fetchall()
        return [FetchedMessage(id=r[0], date=datetime.fromtimestamp(r[2], UTC), html=r[1]) for r in rows]

    def send_admin(self, chat: str, text: str) -> None:
        with self.lock, self.conn:
            self.conn.execute("INSERT INTO admin (chat, text, at) VALUES (?, ?, ?)", (chat, text, time.time()))

    def close(self) -> None:
        self.conn.close()


def _message(row: tuple[int, str, float]) -> FetchedMessage:
    return FetchedMessage(id=row[0], date=datetime.fromtimestamp(row[2], UTC), html=row[1])


def post_donor(path: Path, channel: str, messages: list[tuple[int, str]], *, live: bool = False) -> None:
    """Donor messages (id, html) appear in `channel`: fetchable by collect at once and, when `live`, delivered
    to a listener's `listen` too."""
    conn = connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO donor (channel, id, html, at, live) VALUES (?, ?, ?, ?, ?)",
                [(normalize_channel_ref(channel), i, html, time.time(), int(live)) for i, html in messages],
            )
    finally:
        conn.close()


def visible(path: Path, target: str | None = None) -> list[dict[str, Any]]:
    """The messages not deleted, oldest first (for the tests' and the chaos bench's checks)."""
    conn = connect(path)
    try:
        sql = "SELECT id, target, html, at FROM messages WHERE deleted = 0"
        params: tuple[str, ...] = ()
        if target is not None:
            sql += " AND target = ?"
            params = (normalize_channel_ref(target),)
        cursor = conn.execute(sql + " ORDER BY id", params)
        return [dict(zip(("id", "target", "html", "at"), row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


def gateway_from_env(runtime: Any) -> SharedTelegram:
    marker = os.environ.get("CONTENTQ_FAKE_TG_MARKER")
    return SharedTelegram(
        Path(os.environ["CONTENTQ_FAKE_TG_DB"]),
        hang=os.environ.get("CONTENTQ_FAKE_TG_HANG", ""),
        marker=Path(marker) if marker else None,
        send_delay=float(os.environ.get("CONTENTQ_FAKE_TG_SEND_DELAY", "0") or 0),
    )


class LoggedOut:
    """An account whose session Telegram forgot: every call raises AuthKeyUnregisteredError."""

    def __getattr__(self, name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise errors.AuthKeyUnregisteredError(request=None)

        return refused

    def close(self) -> None:
        pass


class SharedAccounts:
    """One gateway per account over the shared file; the accounts in `logged_out` refuse everything."""

    def __init__(self, shared: SharedTelegram, logged_out: set[str]) -> None:
        self.shared = shared
        self.logged_out = logged_out

    def gateway(self, account: str) -> Any:
        return LoggedOut() if account in self.logged_out else self.shared

    def close(self) -> None:
        self.shared.close()


def accounts_from_env(runtime: Any) -> SharedAccounts:
    names = {n.strip() for n in os.environ.get("CONTENTQ_FAKE_TG_LOGGED_OUT", "").split(",") if n.strip()}
    return SharedAccounts(gateway_from_env(runtime), names)
