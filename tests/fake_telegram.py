"""A scripted Telegram behind the gateway Protocol, raising Telethon's real error classes.

Script channels with messages, queue errors for the next calls of a method, and inspect what was sent.
Like Telegram, it refuses a reused random_id with RandomIdDuplicateError.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from telethon import errors

from contentq.integrations.telegram.formatting import mention_ids
from contentq.integrations.telegram.gateway import (
    STATS_BATCH,
    Account,
    FetchedMessage,
    ListenUpdate,
    MediaInfo,
    MessageStats,
    OutgoingMedia,
    OutgoingPart,
    ResolvedChannel,
    album_group,
)
from contentq.routes import normalize_channel_ref


@dataclass
class SentMessage:
    target: str
    message_id: int
    html: str
    media: list[str]
    random_id: int
    at: datetime
    deleted: bool = False
    kind: str | None = None  # media kind, None for text
    grouped_id: int | None = None  # set on the items of an album
    item: OutgoingMedia | None = None  # the media as sent: its kind and attributes (duration, spoiler, title …)
    mentions: list[int] = field(default_factory=list)  # users mentioned by name (sent as mention entities)
    account: str | None = None  # the account that sent it (FakeAccounts)


class StatsSource(Protocol):
    """What a channel's message has achieved by now (insights): MessageStats, or None when it does not exist."""

    def __call__(self, ref: str, message_id: int) -> MessageStats | None: ...


@dataclass
class FakeTelegram:
    channels: dict[str, ResolvedChannel] = field(default_factory=dict)
    messages: dict[str, list[FetchedMessage]] = field(default_factory=lambda: defaultdict(list))
    media_bytes: dict[tuple[str, int], bytes] = field(default_factory=dict)
    sent: list[SentMessage] = field(default_factory=list)
    admin_messages: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    premium: bool = False
    authorized: bool = True
    connected: bool = True
    dead: bool = False  # a dead session: ensure_ready and reconnect keep failing
    reconnects: int = 0
    auto_channels: bool = False  # resolve() invents unknown channels (benches)
    send_log: Path | None = None  # one JSON line per send call: time, target, html, kind
    _errors: dict[str, deque[BaseException | None]] = field(default_factory=lambda: defaultdict(deque))
    _errors_after: dict[str, deque[BaseException | None]] = field(default_factory=lambda: defaultdict(deque))
    _used_random_ids: set[int] = field(default_factory=set)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _groups: itertools.count = field(default_factory=lambda: itertools.count(5_000_000))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    edits: list[tuple[str, int, str]] = field(default_factory=list)  # (target, message id, html) per edit call
    live_connected: bool = True  # the live update stream (listen); messages injected while down are not pushed
    _live: queue.Queue[ListenUpdate | None] = field(default_factory=queue.Queue)
    stats: StatsSource | None = None  # insights: a message's views … by now; None: sent messages, all zero
    subscribers: dict[str, int] = field(default_factory=dict)  # channel ref → subscriber count

    # Scripting ---------------------------------------------------------------------------------

    def add_channel(self, ref: str, channel_id: int | None = None, title: str = "") -> ResolvedChannel:
        ref = normalize_channel_ref(ref)
        cid = channel_id or (abs(hash(ref)) % 10**9 + 10**9)
        channel = ResolvedChannel(ref=ref, id=cid, access_hash=cid * 7, title=title or ref, username=ref.lstrip("@"))
        self.channels[ref] = channel
        return channel

    def add_message(
        self,
        ref: str,
        msg_id: int,
        html: str = "",
        *,
        media: MediaInfo | None = None,
        data: bytes | None = None,
        grouped_id: int | None = None,
        is_forward: bool = False,
        forward_name: str | None = None,
        forward_link: str | None = None,
        date: datetime | None = None,
        paid_stars: int | None = None,
    ) -> FetchedMessage:
        ref = normalize_channel_ref(ref)
        if ref not in self.channels:
            self.add_channel(ref)
        message = FetchedMessage(
            id=msg_id, date=date or datetime.now(UTC), html=html, grouped_id=grouped_id,
            is_forward=is_forward or bool(forward_name), media=media,
            forward_name=forward_name, forward_link=forward_link, paid_stars=paid_stars,
        )  # fmt: skip
        self.messages[ref].append(message)
        if media is not None:
            self.media_bytes[(ref, msg_id)] = data if data is not None else f"media {ref} {msg_id}".encode()
        return message

    def fail_next(self, method: str, *excs: BaseException | None) -> None:
        """The next calls of `method` raise these, in order (None lets that call through)."""
        self._errors[method].extend(excs)

    def fail_after_next(self, method: str, *excs: BaseException | None) -> None:
        """The next calls of `method` take effect, then raise these (a reply lost, a crash after sending);
        None lets that call return normally."""
        self._errors_after[method].extend(excs)

    def _maybe_fail_after(self, method: str) -> None:
        queue = self._errors_after.get(method)
        if queue:
            exc = queue.popleft()
            if exc is not None:
                raise exc

    def _maybe_fail(self, method: str, arg: Any = None) -> None:
        self.calls.append((method, arg))
        queue = self._errors.get(method)
        if queue:
            exc = queue.popleft()
            if exc is not None:
                raise exc

    # Gateway Protocol --------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        self._maybe_fail("ensure_ready")
        if self.dead or not self.connected:
            raise ConnectionError("the Telegram connection is down")
        if not self.authorized:
            raise errors.AuthKeyUnregisteredError(request=None)

    def reconnect(self) -> None:
        self.reconnects += 1
        self._maybe_fail("reconnect")
        if not self.dead:
            self.connected = True

    def account(self) -> Account:
        self._maybe_fail("account")
        return Account(id=42, username="operator", name="Operator", phone="+10000000000", premium=self.premium)

    def resolve(self, ref: str) -> ResolvedChannel:
        self._maybe_fail("resolve", ref)
        key = normalize_channel_ref(ref)
        if key not in self.channels and self.auto_channels:
            self.add_channel(key)
        if key not in self.channels:
            raise errors.UsernameNotOccupiedError(request=None)
        return self.channels[key]

    def fetch_messages(self, channel: ResolvedChannel, *, min_id: int, limit: int) -> list[FetchedMessage]:
        self._maybe_fail("fetch_messages", (channel.ref, min_id, limit))
        newer = sorted((m for m in self.messages[channel.ref] if m.id > min_id), key=lambda m: m.id)
        if not limit:
            return newer
        return newer[:limit] if min_id > 0 else newer[-limit:]  # like Telethon's reverse=True when min_id > 0

    def download_media(self, channel: ResolvedChannel, message_id: int) -> bytes:
        self._maybe_fail("download_media", (channel.ref, message_id))
        return self.media_bytes[(channel.ref, message_id)]

    def send(self, target: ResolvedChannel, part: OutgoingPart, random_ids: list[int]) -> list[int]:
        self._maybe_fail("send", (target.ref, part.kind))
        groups = {album_group(item.kind) for item in part.media}
        if part.kind == "album" and (None in groups or len(groups) > 1):  # Telegram refuses such an album
            raise errors.MediaInvalidError(request=None)
        if self.send_log is not None:
            line = {"t": time.time(), "target": target.ref, "html": part.html, "kind": part.kind,
                    "media": [item.kind for item in part.media]}  # fmt: skip
            with open(self.send_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        with self._lock:
            if any(r in self._used_random_ids for r in random_ids):
                raise errors.RandomIdDuplicateError(request=None)
            self._used_random_ids.update(random_ids)
            now = datetime.now(UTC)
            ids = []
            items = part.media or [None]
            grouped_id = next(self._groups) if part.kind == "album" else None
            for index, (item, random_id) in enumerate(zip(items, random_ids, strict=True)):
                html = part.html if index == 0 or part.kind == "text" else ""
                mid = next(self._ids)
                ids.append(mid)
                self.sent.append(
                    SentMessage(
                        target.ref,
                        mid,
                        html,
                        [str(item.path)] if item else [],
                        random_id,
                        now,
                        kind=item.kind if item else None,
                        grouped_id=grouped_id,
                        item=item,
                        mentions=mention_ids(html),
                    )
                )
        self._maybe_fail_after("send")
        return ids

    def delete_messages(self, target: ResolvedChannel, message_ids: list[int]) -> None:
        self._maybe_fail("delete_messages", (target.ref, list(message_ids)))
        for message in self.sent:
            if message.target == target.ref and message.message_id in message_ids:
                message.deleted = True

    def recent_messages(self, target: ResolvedChannel, limit: int = 20) -> list[FetchedMessage]:
        self._maybe_fail("recent_messages", target.ref)
        mine = [m for m in self.sent if m.target == target.ref and not m.deleted]
        return [
            FetchedMessage(
                id=m.message_id,
                date=m.at,
                html=m.html,
                grouped_id=m.grouped_id,
                media=MediaInfo(kind=m.kind) if m.kind else None,  # type: ignore[arg-type]
            )
            for m in reversed(mine)
        ][:limit]

    def send_admin(self, chat: str, text: str) -> None:
        self._maybe_fail("send_admin", chat)
        self.admin_messages.append((chat, text))

    def close(self) -> None:
        self.connected = False

    def edit_message(self, target: ResolvedChannel, message_id: int, html: str) -> None:
        self._maybe_fail("edit_message", (target.ref, message_id))
        for message in self.sent:
            if message.target == target.ref and message.message_id == message_id and not message.deleted:
                if message.html == html:
                    return  # like the Telethon gateway: the same text is no change, not an error
                message.html = html
                self.edits.append((target.ref, message_id, html))
                self._maybe_fail_after("edit_message")
                return
        raise errors.MessageIdInvalidError(request=None)

    def message_stats(self, channel: ResolvedChannel, message_ids: list[int]) -> list[MessageStats]:
        self._maybe_fail("message_stats", (channel.ref, list(message_ids)))
        if not message_ids:
            raise errors.MessageIdsEmptyError(request=None)
        if len(message_ids) > STATS_BATCH:
            raise errors.LimitInvalidError(request=None)
        if channel.ref not in self.channels:
            raise errors.ChannelInvalidError(request=None)
        found = []
        for mid in message_ids:
            if self.stats is not None:
                stats = self.stats(channel.ref, mid)
            else:
                present = any(m.target == channel.ref and m.message_id == mid and not m.deleted for m in self.sent)
                stats = MessageStats(mid, 0, 0, 0) if present else None
            if stats is not None:
                found.append(stats)
        return found

    def subscriber_count(self, channel: ResolvedChannel) -> int:
        self._maybe_fail("subscriber_count", channel.ref)
        if channel.ref not in self.channels:
            raise errors.ChannelInvalidError(request=None)
        return self.subscribers.get(channel.ref, 0)

    def listen(self, channels: list[ResolvedChannel], *, tick: float = 1.0) -> Iterator[ListenUpdate]:
        self._maybe_fail("listen", [c.ref for c in channels])
        wanted = {c.id for c in channels}
        yield ListenUpdate("connected", received_at=time.time())
        while True:
            try:
                update = self._live.get(timeout=tick)
            except queue.Empty:
                yield ListenUpdate("idle", received_at=time.time())
                continue
            if update is None:  # close()
                return
            if update.channel_id is None or update.channel_id in wanted:
                yield update

    # Live updates (listen) ---------------------------------------------------------------------

    def _push(self, ref: str, kind: str, messages: list[FetchedMessage] = (), deleted: list[int] = ()) -> None:  # type: ignore[assignment]
        if self.live_connected:
            cid = self.channels[normalize_channel_ref(ref)].id
            self._live.put(ListenUpdate(kind, cid, tuple(messages), tuple(deleted), received_at=time.time()))  # type: ignore[arg-type]

    def inject_message(self, ref: str, msg_id: int, html: str = "", **options: Any) -> FetchedMessage:
        """A new donor message: fetchable at once, and delivered live unless the connection is down."""
        message = self.add_message(ref, msg_id, html, **options)
        self._push(ref, "new", [message])
        return message

    def inject_album(
        self, ref: str, msg_ids: list[int], caption: str = "", *, separate: bool = False, grouped_id: int | None = None
    ) -> list[FetchedMessage]:
        """An album of photos (the caption on the first): one `album` update, or with separate=True one `new`
        update per item sharing the grouped_id (as Telegram delivers them before grouping)."""
        gid = grouped_id or next(self._groups)
        items = [
            self.add_message(ref, mid, caption if i == 0 else "", grouped_id=gid,
                             media=MediaInfo("photo", "image/jpeg", 1000 + i, 800, 600))
            for i, mid in enumerate(msg_ids)
        ]  # fmt: skip
        if separate:
            for item in items:
                self._push(ref, "new", [item])
        else:
            self._push(ref, "album", items)
        return items

    def inject_edit(self, ref: str, msg_id: int, html: str) -> FetchedMessage:
        """The donor edits a message's text."""
        ref = normalize_channel_ref(ref)
        old = next(m for m in self.messages[ref] if m.id == msg_id)
        new = FetchedMessage(id=old.id, date=old.date, html=html, grouped_id=old.grouped_id, media=old.media,
                             is_forward=old.is_forward)  # fmt: skip
        self.messages[ref] = [new if m.id == msg_id else m for m in self.messages[ref]]
        self._push(ref, "edit", [new])
        return new

    def inject_delete(self, ref: str, msg_ids: list[int]) -> None:
        """The donor deletes messages."""
        ref = normalize_channel_ref(ref)
        self.messages[ref] = [m for m in self.messages[ref] if m.id not in msg_ids]
        self._push(ref, "delete", deleted=msg_ids)

    def drop_connection(self, detail: str = "connection reset by peer") -> None:
        """The live connection is lost: updates stop until restore_connection()."""
        self._live.put(ListenUpdate("disconnected", received_at=time.time(), detail=detail))
        self.live_connected = False

    def restore_connection(self) -> None:
        self.live_connected = True
        self._live.put(ListenUpdate("connected", received_at=time.time()))

    def stop_listening(self) -> None:
        self._live.put(None)

    # Inspection --------------------------------------------------------------------------------

    def visible(self, target: str) -> list[SentMessage]:
        ref = normalize_channel_ref(target)
        return [m for m in self.sent if m.target == ref and not m.deleted]


def gateway_from_env(runtime: Any) -> FakeTelegram:
    """A gateway factory for CONTENTQ_TG_GATEWAY=tests.fake_telegram:gateway_from_env (benches, demos):
    channels appear on first use; sends are logged to CONTENTQ_FAKE_SEND_LOG when set."""
    log = os.environ.get("CONTENTQ_FAKE_SEND_LOG")
    return FakeTelegram(auto_channels=True, send_log=Path(log) if log else None)


class FakeAccounts:
    """Per-account mode: one FakeTelegram per account name, like the Telethon gateways of a process (each its own
    session: one can be logged out while the others work). They share one Telegram: the channels, the donor
    messages and what any of them sent are the same for all (`world`), as two real accounts see one channel.

    Put it where a test puts a gateway: `runtime.services["telegram"] = FakeAccounts(...)`."""

    def __init__(self, *names: str) -> None:
        self.world = FakeTelegram()
        self.accounts: dict[str, FakeTelegram] = {}
        self.opened: list[str] = []  # account names in the order their gateway was first asked for
        for user_id, name in enumerate(names, start=100):
            self.add(name, user_id)

    def add(self, name: str, user_id: int) -> FakeTelegram:
        shared = self.world
        fake = _AccountFake(
            channels=shared.channels, messages=shared.messages, media_bytes=shared.media_bytes, sent=shared.sent,
            admin_messages=shared.admin_messages, _used_random_ids=shared._used_random_ids, _ids=shared._ids,
            _groups=shared._groups, _lock=shared._lock, edits=shared.edits,
        )  # fmt: skip
        fake.user_id, fake.name = user_id, name
        self.accounts[name] = fake
        return fake

    def __getitem__(self, name: str) -> FakeTelegram:
        return self.accounts[name]

    def gateway(self, account: str) -> FakeTelegram:
        if account not in self.accounts:
            raise KeyError(f"the test scripted no account {account!r}")
        if account not in self.opened:
            self.opened.append(account)
        return self.accounts[account]

    def log_out(self, name: str, exc: BaseException | None = None) -> None:
        """Telegram forgets the account's session: every request of it raises `exc` (AuthKeyUnregisteredError)."""
        self.accounts[name].revoked = exc or errors.AuthKeyUnregisteredError(request=None)

    def close(self) -> None:
        for fake in self.accounts.values():
            fake.close()


@dataclass
class _AccountFake(FakeTelegram):
    """One account of FakeAccounts: what it sends is recorded with its name; once `revoked`, every call raises."""

    user_id: int = 42
    name: str = "main"
    revoked: BaseException | None = None

    def _maybe_fail(self, method: str, arg: Any = None) -> None:
        if self.revoked is not None:
            self.calls.append((method, arg))
            raise self.revoked
        super()._maybe_fail(method, arg)

    def account(self) -> Account:
        self._maybe_fail("account")
        return Account(id=self.user_id, username=self.name, name=self.name.title(), phone=None, premium=self.premium)

    def send(self, target: ResolvedChannel, part: OutgoingPart, random_ids: list[int]) -> list[int]:
        before = len(self.sent)
        ids = super().send(target, part, random_ids)
        for message in self.sent[before:]:
            message.account = self.name
        return ids
