"""The Telethon implementation of the TelegramGateway.

One TelegramClient per process, connected once and reused across jobs, living on a private event loop that
runs on a daemon thread; the synchronous gateway methods submit coroutines to it with
`run_coroutine_threadsafe`. Sends go through the raw MTProto requests (SendMessage, SendMedia,
SendMultiMedia) with the caller's random ids, so a resend after a crash is refused by Telegram with
RandomIdDuplicateError instead of posting twice. Telethon's RPC errors pass through unchanged; network
failures and timeouts become ConnectionError.

The same client serves a listener hosted by the worker (`contentq worker --host listen`): its update handlers
run on that loop and feed the listener's thread through a queue, while the jobs' requests go over the same
connection (one session, one client, one process). It is built from the account's session file again when a
login replaced that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import pkgutil
import queue
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from telethon import TelegramClient, errors, events, utils
from telethon.sessions import StringSession
from telethon.tl import functions
from telethon.tl import types as tl

from contentq.content.refs import normalize_channel_ref
from contentq.errors import ConfigError, ContentqError
from contentq.integrations.telegram.formatting import entities_to_html, html_to_entities, mention_ids, mention_user_id
from contentq.integrations.telegram.gateway import (
    STATS_BATCH,
    Account,
    FetchedMessage,
    ListenUpdate,
    MediaInfo,
    MediaKind,
    MessageStats,
    NotLoggedInError,
    OutgoingMedia,
    OutgoingPart,
    ResolvedChannel,
)
from contentq.integrations.telegram.profiles import MAIN_ACCOUNT, AccountProfile, profile_from_row
from contentq.redact import register_secret
from contentq.settings import Settings

T = TypeVar("T")

log = logging.getLogger("contentq.telegram")

TRANSFER_TIMEOUT_FACTOR = 5
"""Uploads and downloads may take this many times settings.tg_timeout."""

ADMIN_TIMEOUT = 15
"""Seconds an admin alert may take: alerts are sent from inside jobs, often when Telegram is in trouble."""


# -- session and client ----------------------------------------------------------------------------


def require_api(settings: Settings) -> tuple[int, str]:
    if settings.tg_api_id is None or settings.tg_api_hash is None:
        raise ConfigError(
            "CONTENTQ_TG_API_ID and CONTENTQ_TG_API_HASH are not set: create an application at "
            "https://my.telegram.org (API development tools) and put both in .env"
        )
    return settings.tg_api_id, settings.tg_api_hash.get_secret_value()


def load_session_string(settings: Settings, profile: AccountProfile | None = None) -> tuple[str | None, str]:
    """The saved session of an account (default main) and where it came from: for main, CONTENTQ_TG_SESSION wins
    over the session file."""
    profile = profile or profile_from_row(settings, None)
    if profile.env_session and settings.tg_session is not None and settings.tg_session.get_secret_value().strip():
        return settings.tg_session.get_secret_value().strip(), "CONTENTQ_TG_SESSION"
    path = profile.session_path
    if not path.exists():
        return None, str(path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)  # a session is a password: keep it private
    value = path.read_text(encoding="utf-8").strip()
    register_secret(value)
    return value or None, str(path)


def write_session(path: Path, value: str) -> None:
    """Save a session string readable by its owner only (mode 0600), atomically."""
    register_secret(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def login_command(account: str) -> str:
    """The command that logs an account in, as messages name it."""
    return "contentq login" if account == MAIN_ACCOUNT else f"contentq accounts login {account}"


def string_session(value: str | None, origin: str, account: str = MAIN_ACCOUNT) -> StringSession:
    try:
        return StringSession(value or None)
    except ValueError:
        raise ContentqError(
            f"the Telegram session in {origin} is not valid; run `{login_command(account)}` again"
        ) from None


def make_client(settings: Settings, session: StringSession, profile: AccountProfile | None = None) -> TelegramClient:
    """A Telethon client of one account (default main): its fingerprint (device, system and app version), its
    proxy, contentq's flood-sleep threshold (not connected)."""
    api_id, api_hash = require_api(settings)
    profile = profile or profile_from_row(settings, None)
    return TelegramClient(
        session,
        api_id,
        api_hash,
        **profile.client_options(),
        flood_sleep_threshold=settings.tg_flood_sleep_threshold,
        timeout=min(settings.tg_timeout, 30),
        connection_retries=2,
        request_retries=3,
        receive_updates=False,  # jobs ask and never listen; a listener turns updates on while it runs (listen())
    )


class EventLoopThread:
    """An asyncio loop on a daemon thread, for calling async Telethon from synchronous workers."""

    def __init__(self, name: str = "contentq-telegram") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop and wait for it. Whatever stops the wait (the timeout, RQ's job timeout
        raised by SIGALRM in this thread, Ctrl-C) also cancels the coroutine, so a request the caller gave
        up on cannot complete later (a send landing after its job was declared timed out)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise ConnectionError(f"Telegram did not answer within {timeout:g} s") from None
        except errors.RPCError:
            raise
        except Exception as exc:
            raise map_error(exc) from exc
        finally:
            if not future.done():
                future.cancel()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


def map_error(exc: BaseException) -> BaseException:
    """Telegram's own errors unchanged; network trouble as ConnectionError (what callers retry on)."""
    if isinstance(exc, errors.RPCError | ConnectionError | ContentqError):
        return exc
    if isinstance(exc, TimeoutError | asyncio.IncompleteReadError | OSError):
        return ConnectionError(f"Telegram connection failed: {type(exc).__name__}: {exc}")
    return exc


# -- conversions (pure; tested without a network) ---------------------------------------------------


def input_peer(channel: ResolvedChannel) -> Any:
    if channel.access_hash is None:
        return tl.InputPeerChat(chat_id=channel.id)
    return tl.InputPeerChannel(channel_id=channel.id, access_hash=channel.access_hash)


def channel_from_entity(ref: str, entity: Any) -> ResolvedChannel:
    return ResolvedChannel(
        ref=ref,
        id=entity.id,
        access_hash=getattr(entity, "access_hash", None),
        title=getattr(entity, "title", None)
        or " ".join(p for p in (getattr(entity, "first_name", None), getattr(entity, "last_name", None)) if p),
        username=getattr(entity, "username", None),
    )


def _largest_photo_size(photo: Any) -> tuple[int | None, int | None, int | None]:
    best: tuple[int | None, int | None, int | None] = (None, None, None)
    for size in getattr(photo, "sizes", None) or []:
        w, h = getattr(size, "w", None), getattr(size, "h", None)
        nbytes = getattr(size, "size", None)
        if nbytes is None and getattr(size, "sizes", None):
            nbytes = max(size.sizes)
        if w is not None and (best[0] is None or w * (h or 0) > best[0] * (best[1] or 0)):
            best = (w, h, nbytes)
    return best


def _document_kind(media: Any, attributes: dict[type, Any]) -> MediaKind:
    video = attributes.get(tl.DocumentAttributeVideo)
    audio = attributes.get(tl.DocumentAttributeAudio)
    if tl.DocumentAttributeSticker in attributes:  # a video sticker has a video attribute too
        return "sticker"
    if video is not None and (video.round_message or media.round):
        return "video_note"
    if tl.DocumentAttributeAnimated in attributes:
        return "animation"
    if video is not None:
        return "video"
    if audio is not None:
        return "voice" if audio.voice or media.voice else "audio"
    return "document"


def media_info(message: Any) -> MediaInfo | None:
    """What contentq keeps of a message's media: its kind as Telegram shows it (a sticker, a round video, a voice
    message, a GIF …) and what it is sent again with (size, length, title, spoiler); None for no media or kinds
    it does not repost."""
    media = getattr(message, "media", None)
    if isinstance(media, tl.MessageMediaPhoto) and isinstance(media.photo, tl.Photo):
        w, h, size = _largest_photo_size(media.photo)
        return MediaInfo("photo", "image/jpeg", size, w, h, spoiler=bool(media.spoiler))
    if isinstance(media, tl.MessageMediaDocument) and isinstance(media.document, tl.Document):
        doc = media.document
        found = {type(attr): attr for attr in doc.attributes}
        video, audio = found.get(tl.DocumentAttributeVideo), found.get(tl.DocumentAttributeAudio)
        image, sticker = found.get(tl.DocumentAttributeImageSize), found.get(tl.DocumentAttributeSticker)
        named = found.get(tl.DocumentAttributeFilename)
        w, h = (video.w, video.h) if video else (image.w, image.h) if image else (None, None)
        duration = video.duration if video else audio.duration if audio else None
        return MediaInfo(
            _document_kind(media, found), doc.mime_type, doc.size, w, h, named.file_name if named else None,
            duration=float(duration) if duration is not None else None, spoiler=bool(media.spoiler),
            title=audio.title if audio else None, performer=audio.performer if audio else None,
            emoji=(sticker.alt or None) if sticker else None,
        )  # fmt: skip
    return None


def paid_stars(message: Any) -> int | None:
    """The price of a paid-media message in stars (0 when not told); None for any other message."""
    media = getattr(message, "media", None)
    if isinstance(media, tl.MessageMediaPaidMedia):
        return int(media.stars_amount or 0)
    return None


def forward_origin(message: Any) -> tuple[str | None, str | None]:
    """(name, link) of a forwarded message's origin, as far as the message itself tells (route forward_credit)."""
    header = getattr(message, "fwd_from", None)
    if header is None:
        return None, None
    forward = getattr(message, "forward", None)  # Telethon's Forward: the origin's entity when it was sent along
    chat = getattr(forward, "chat", None) or getattr(forward, "sender", None)
    name = getattr(chat, "title", None) or " ".join(
        n for n in (getattr(chat, "first_name", None), getattr(chat, "last_name", None)) if n
    )
    name = name or header.from_name or header.post_author or None
    username = getattr(chat, "username", None)
    link = None
    if isinstance(header.from_id, tl.PeerChannel) and header.channel_post:
        where = username or f"c/{header.from_id.channel_id}"
        link = f"https://t.me/{where}/{header.channel_post}"
    elif username:
        link = f"https://t.me/{username}"
    return name, link


def to_fetched(message: Any) -> FetchedMessage | None:
    """A Telethon message as a FetchedMessage; None for service messages and ones with nothing to keep."""
    if not isinstance(message, tl.Message):
        return None
    media = media_info(message)
    paid = paid_stars(message)
    html = entities_to_html(message.message or "", message.entities)
    if not html.strip() and media is None and paid is None:
        return None
    origin = forward_origin(message)
    return FetchedMessage(
        id=message.id,
        date=message.date,
        html=html,
        grouped_id=message.grouped_id,
        is_forward=message.fwd_from is not None,
        media=media,
        views=message.views,
        forward_name=origin[0],
        forward_link=origin[1],
        paid_stars=paid,
    )


_DEFAULT_MIME = {"video": "video/mp4", "video_note": "video/mp4", "animation": "video/mp4", "voice": "audio/ogg",
                 "audio": "audio/mpeg", "sticker": "image/webp"}  # fmt: skip


def _video(item: OutgoingMedia, *, round_message: bool = False) -> Any:
    return tl.DocumentAttributeVideo(
        duration=float(item.duration or 0), w=item.width or 1, h=item.height or item.width or 1,
        round_message=round_message or None, supports_streaming=True,
    )  # fmt: skip


def document_attributes(item: OutgoingMedia) -> tuple[list[Any], str]:
    """The attributes and MIME type a file is sent with, by what it is: contentq's stored kind, size, length,
    title and name (Telethon reads them from the file only with `hachoir`, which contentq does not need)."""
    mime = item.mime or _DEFAULT_MIME.get(item.kind) or mimetypes.guess_type(item.path.name)[0]
    mime = mime or "application/octet-stream"
    name = tl.DocumentAttributeFilename(file_name=item.name)
    seconds = round(item.duration or 0)
    if item.kind == "video":
        return [_video(item), name], mime
    if item.kind == "video_note":
        return [_video(item, round_message=True)], mime
    if item.kind == "animation":
        moving = _video(item) if mime.startswith("video/") else tl.DocumentAttributeImageSize(
            w=item.width or 1, h=item.height or 1)  # fmt: skip
        return [moving, tl.DocumentAttributeAnimated(), name], mime
    if item.kind == "voice":
        return [tl.DocumentAttributeAudio(duration=seconds, voice=True)], mime
    if item.kind == "audio":
        return [tl.DocumentAttributeAudio(duration=seconds, title=item.title, performer=item.performer), name], mime
    if item.kind == "sticker":
        sticker = tl.DocumentAttributeSticker(alt=item.emoji or "", stickerset=tl.InputStickerSetEmpty())
        extra = [_video(item)] if mime.startswith("video/") else []
        if mime == "image/webp" and item.width and item.height:
            extra = [tl.DocumentAttributeImageSize(w=item.width, h=item.height)]
        return [sticker, *extra, name], mime
    return [name], mime


def uploaded_media(item: OutgoingMedia, file: Any) -> Any:
    """The InputMedia for an uploaded file, sent as what it is (a sticker, a round video, a voice message …) and
    under its media spoiler when it had one."""
    spoiler = True if item.spoiler and item.kind in ("photo", "video", "animation") else None
    if item.kind == "photo":
        return tl.InputMediaUploadedPhoto(file=file, spoiler=spoiler)
    attributes, mime = document_attributes(item)
    return tl.InputMediaUploadedDocument(
        file=file, mime_type=mime, attributes=attributes, force_file=item.kind == "document" or None,
        nosound_video=item.kind == "animation" or None, spoiler=spoiler,
    )  # fmt: skip


async def register_upload(client: Any, peer: Any, item: OutgoingMedia) -> Any:
    """Upload a file and register it with Telegram (uploadMedia), as albums require: the user and the bot client."""
    uploaded = await client.upload_file(str(item.path))
    answer = await client(functions.messages.UploadMediaRequest(peer=peer, media=uploaded_media(item, uploaded)))
    return registered_media(answer, item)


def registered_media(answer: Any, item: OutgoingMedia) -> Any:
    """The InputMedia to send for what uploadMedia answered, keeping the media spoiler (the answer may not
    carry it)."""
    media = utils.get_input_media(answer)
    if item.spoiler and item.kind in ("photo", "video", "animation"):
        media.spoiler = True
    return media


def mention_entities(entities: list[Any], users: Mapping[int, Any]) -> list[Any]:
    """A mention by name (`<a href="tg://user?id=N">`, read as a text link) as the entity Telegram shows as a
    mention: InputMessageEntityMentionName with the user resolved (`users`: id → InputUser). A user the account
    cannot resolve leaves the name as plain text: a tg://user link would show as a bare URL."""
    out = []
    for entity in entities:
        user_id = mention_user_id(entity.url) if isinstance(entity, tl.MessageEntityTextUrl) else None
        if user_id is None:
            out.append(entity)
        elif user_id in users:
            out.append(tl.InputMessageEntityMentionName(offset=entity.offset, length=entity.length,
                                                        user_id=users[user_id]))  # fmt: skip
    return out


def build_send_request(
    peer: Any, part: OutgoingPart, random_ids: list[int], media: list[Any], users: Mapping[int, Any] | None = None
) -> Any:
    """The raw request for one part: SendMessage (text), SendMedia (one item), SendMultiMedia (album).

    The caption (or text) goes with the first item; each item carries its own random id. `users`: the resolved
    users of the part's mentions by name (see mention_entities).
    """
    expected = max(1, len(part.media))
    if len(random_ids) != expected or len(media) != len(part.media):
        raise ValueError(f"a {part.kind} part needs {expected} random id(s) and its media, got {len(random_ids)}")
    text, entities = html_to_entities(part.html)
    entities = mention_entities(entities, users or {})
    if part.kind == "text":
        return functions.messages.SendMessageRequest(
            peer=peer, message=text, entities=entities or None, random_id=random_ids[0]
        )
    if part.kind == "media":
        return functions.messages.SendMediaRequest(
            peer=peer, media=media[0], message=text, entities=entities or None, random_id=random_ids[0]
        )
    return functions.messages.SendMultiMediaRequest(
        peer=peer,
        multi_media=[
            tl.InputSingleMedia(
                media=item,
                random_id=random_id,
                message=text if index == 0 else "",
                entities=(entities or None) if index == 0 else None,
            )  # fmt: skip
            for index, (item, random_id) in enumerate(zip(media, random_ids, strict=True))
        ],
    )


def sent_message_ids(result: Any, random_ids: list[int]) -> list[int]:
    """Message ids of a send, in the order of `random_ids` (UpdateMessageID maps one to the other)."""
    if isinstance(result, tl.UpdateShortSentMessage):
        return [result.id]
    updates = getattr(result, "updates", None) or []
    by_random = {u.random_id: u.id for u in updates if isinstance(u, tl.UpdateMessageID)}
    if all(r in by_random for r in random_ids):
        return [by_random[r] for r in random_ids]
    new = sorted(u.message.id for u in updates if isinstance(u, tl.UpdateNewChannelMessage | tl.UpdateNewMessage))
    if len(new) == len(random_ids):
        return new
    raise ConnectionError("Telegram's answer to the send names no message ids; look at the channel to settle it")


def reaction_key(reaction: Any) -> str:
    """A reaction as insights count it: the emoji itself, 'custom:<document id>' for a custom emoji, '⭐' for
    paid (star) reactions."""
    if isinstance(reaction, tl.ReactionEmoji):
        return str(reaction.emoticon)
    if isinstance(reaction, tl.ReactionCustomEmoji):
        return f"custom:{reaction.document_id}"
    if isinstance(reaction, tl.ReactionPaid):
        return "⭐"
    return type(reaction).__name__


def to_stats(message: Any) -> MessageStats | None:
    """A channel message's counters; None for a message that no longer exists (MessageEmpty)."""
    if not isinstance(message, tl.Message | tl.MessageService):
        return None
    reactions: dict[str, int] = {}
    results = getattr(getattr(message, "reactions", None), "results", None) or []
    for count in results:
        key = reaction_key(count.reaction)
        reactions[key] = reactions.get(key, 0) + int(count.count)
    replies = getattr(message, "replies", None)
    return MessageStats(
        id=int(message.id), views=getattr(message, "views", None), forwards=getattr(message, "forwards", None),
        replies=int(replies.replies) if replies is not None else None, reactions=reactions,
    )  # fmt: skip


def input_channel(channel: ResolvedChannel) -> Any:
    return tl.InputChannel(channel_id=channel.id, access_hash=channel.access_hash or 0)


def marked_id(channel: ResolvedChannel) -> int:
    """The id Telethon's events give as chat_id (-100… for a channel) of a resolved channel."""
    peer = tl.PeerChat(chat_id=channel.id) if channel.access_hash is None else tl.PeerChannel(channel_id=channel.id)
    return int(utils.get_peer_id(peer))


def to_update(kind: str, chat_id: int | None, messages: list[Any], channels: dict[int, int]) -> ListenUpdate | None:
    """A Telethon event's content as a ListenUpdate of one of `channels` (marked id → channel id); None for
    other chats and for messages with nothing to keep (service messages)."""
    if chat_id is None or chat_id not in channels:
        return None
    fetched = tuple(m for m in (to_fetched(x) for x in messages) if m is not None)
    if not fetched:
        return None
    return ListenUpdate(kind, channels[chat_id], fetched, received_at=time.time())  # type: ignore[arg-type]


def account_from_user(user: Any) -> Account:
    name = " ".join(p for p in (user.first_name, user.last_name) if p) or (user.username or str(user.id))
    return Account(
        id=user.id, username=user.username, name=name, phone=user.phone, premium=bool(getattr(user, "premium", False))
    )


# -- the gateway -----------------------------------------------------------------------------------


class TelethonGateway:
    """TelegramGateway over one Telethon client; see the module docstring."""

    def __init__(
        self, settings: Settings, client_factory: Callable[[], Any] | None = None, profile: AccountProfile | None = None
    ) -> None:
        self.settings = settings
        self.profile = profile or profile_from_row(settings, None)
        self._factory = client_factory or self._default_client
        self._client: Any = None
        self._runner: EventLoopThread | None = None
        self._lock = threading.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None  # made on the loop: calls from several threads connect once
        self._session_seen: tuple[int, int] | None = None  # the session file the client was built from

    def _default_client(self) -> TelegramClient:
        profile = self.profile
        value, origin = load_session_string(self.settings, profile)
        if value is None:
            if profile.env_session:
                raise NotLoggedInError("no Telegram session: run `contentq login` (or set CONTENTQ_TG_SESSION)")
            raise NotLoggedInError(
                f"no Telegram session for account {profile.name!r}: run `{login_command(profile.name)}`"
            )
        return make_client(self.settings, string_session(value, origin, profile.name), profile)

    # plumbing

    def _run(self, factory: Callable[[Any], Awaitable[T]], timeout: float | None = None) -> T:
        with self._lock:
            if self._runner is None:
                self._runner = EventLoopThread()
        runner = self._runner

        async def call() -> T:
            client = await self._connected()
            return await factory(client)

        return runner.run(call(), timeout or self.settings.tg_timeout)

    def _connect_lock(self) -> asyncio.Lock:
        """Held while the client connects (on the loop): the worker's jobs, a reconnect and a hosted listener's
        watchdog share this client, and Telethon's connect must not run twice at once."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        return self._connecting

    async def _connected(self) -> Any:
        async with self._connect_lock():
            if self._client is not None and self._session_changed():
                # `contentq login` wrote a new session (the old one logged out): a client of the new one.
                log.info("account %s: a new session file; reconnecting with it", self.profile.name)
                old, self._client = self._client, None
                with contextlib.suppress(Exception):
                    await old.disconnect()
            if self._client is None:
                self._session_seen = self._session_stamp()
                self._client = self._factory()  # built on the loop thread: Telethon binds to the running loop
            if not self._client.is_connected():
                await self._client.connect()
            return self._client

    def _session_stamp(self) -> tuple[int, int] | None:
        """The session file's (mtime, size); None when the session is not a file's (CONTENTQ_TG_SESSION, a test's
        client factory)."""
        if self._factory != self._default_client:
            return None
        if self.profile.env_session and self.settings.tg_session is not None:
            return None
        try:
            found = self.profile.session_path.stat()
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def _session_changed(self) -> bool:
        """A stat a call: a process running for weeks (a worker, its listener) follows a new login by itself."""
        now = self._session_stamp()
        return now is not None and self._session_seen is not None and now != self._session_seen

    # TelegramGateway

    def ensure_ready(self) -> None:
        async def check(client: Any) -> None:
            if not await client.is_user_authorized():
                raise errors.AuthKeyUnregisteredError(request=None)

        self._run(check)

    def reconnect(self) -> None:
        async def drop(client: Any) -> None:
            async with self._connect_lock():
                await client.disconnect()
                await client.connect()

        self._run(drop)

    def account(self) -> Account:
        async def me(client: Any) -> Account:
            user = await client.get_me()
            if user is None:
                raise errors.AuthKeyUnregisteredError(request=None)
            return account_from_user(user)

        return self._run(me)

    def resolve(self, ref: str) -> ResolvedChannel:
        ref = normalize_channel_ref(ref)

        async def lookup(client: Any) -> ResolvedChannel:
            if not ref.lstrip("-").isdigit():
                return channel_from_entity(ref, await client.get_entity(ref.lstrip("@")))
            bare, peer_type = utils.resolve_id(int(ref))
            peer = peer_type(bare)
            try:
                entity = await client.get_entity(peer)
            except ValueError:
                await client.get_dialogs()  # ids alone resolve only for chats the account has seen
                try:
                    entity = await client.get_entity(peer)
                except ValueError:
                    raise ContentqError(
                        f"cannot resolve channel id {ref}: join it with the logged-in account or use its @username"
                    ) from None
            return channel_from_entity(ref, entity)

        return self._run(lookup)

    def fetch_messages(self, channel: ResolvedChannel, *, min_id: int, limit: int) -> list[FetchedMessage]:
        async def fetch(client: Any) -> list[FetchedMessage]:
            # min_id > 0: the oldest page after the cursor (reverse=True walks up from min_id); min_id 0: the
            # newest `limit` (a first run's backfill). See TelegramGateway.fetch_messages.
            found = await client.get_messages(
                input_peer(channel), limit=limit or None, min_id=min_id, reverse=min_id > 0
            )
            converted = (to_fetched(m) for m in found)
            return sorted((m for m in converted if m is not None), key=lambda m: m.id)

        return self._run(fetch, self.settings.tg_timeout * TRANSFER_TIMEOUT_FACTOR)

    def download_media(self, channel: ResolvedChannel, message_id: int) -> bytes:
        async def download(client: Any) -> bytes:
            message = await client.get_messages(input_peer(channel), ids=message_id)
            if message is None:
                return b""  # deleted meanwhile
            data = await client.download_media(message, file=bytes)
            return data or b""

        return self._run(download, self.settings.tg_timeout * TRANSFER_TIMEOUT_FACTOR)

    def send(self, target: ResolvedChannel, part: OutgoingPart, random_ids: list[int]) -> list[int]:
        async def send(client: Any) -> list[int]:
            peer = input_peer(target)
            media = [await register_upload(client, peer, item) for item in part.media]
            users = await self._mentioned_users(client, part.html)
            result = await client(build_send_request(peer, part, random_ids, media, users))
            return sent_message_ids(result, random_ids)

        return self._run(send, self.settings.tg_timeout * (TRANSFER_TIMEOUT_FACTOR if part.media else 1))

    async def _mentioned_users(self, client: Any, html: str) -> dict[int, Any]:
        """The InputUser of each user mentioned by name, as far as the session knows them (Telethon caches the
        users that came with collected messages); the others are left out (their names go as plain text)."""
        users: dict[int, Any] = {}
        for user_id in mention_ids(html):
            try:
                users[user_id] = utils.get_input_user(await client.get_input_entity(tl.PeerUser(user_id)))
            except (ValueError, TypeError, errors.BadRequestError):  # not cached, and users.getUsers refused it
                log.warning("user %s is mentioned by name but cannot be resolved: the name is sent as plain text",
                            user_id)  # fmt: skip
        return users

    def delete_messages(self, target: ResolvedChannel, message_ids: list[int]) -> None:
        async def delete(client: Any) -> None:
            await client.delete_messages(input_peer(target), list(message_ids), revoke=True)

        self._run(delete)

    def recent_messages(self, target: ResolvedChannel, limit: int = 20) -> list[FetchedMessage]:
        async def recent(client: Any) -> list[FetchedMessage]:
            found = await client.get_messages(input_peer(target), limit=limit)
            return [m for m in (to_fetched(x) for x in found) if m is not None]

        return self._run(recent)

    def message_stats(self, channel: ResolvedChannel, message_ids: list[int]) -> list[MessageStats]:
        if not 0 < len(message_ids) <= STATS_BATCH:
            raise ValueError(f"message_stats takes 1 to {STATS_BATCH} message ids, not {len(message_ids)}")

        async def read(client: Any) -> list[MessageStats]:
            # The raw request: exactly one channels.getMessages per call (Telethon's get_messages would also
            # resolve the entity and may split the ids), so a caller counts and paces its requests.
            request = functions.channels.GetMessagesRequest(
                channel=input_channel(channel), id=[tl.InputMessageID(id=i) for i in message_ids]
            )
            answer = await client(request)
            found = (to_stats(m) for m in getattr(answer, "messages", []))
            return [s for s in found if s is not None]

        return self._run(read)

    def subscriber_count(self, channel: ResolvedChannel) -> int:
        async def read(client: Any) -> int:
            full = await client(functions.channels.GetFullChannelRequest(channel=input_channel(channel)))
            return int(getattr(full.full_chat, "participants_count", None) or 0)

        return self._run(read)

    def send_admin(self, chat: str, text: str) -> None:
        entity: int | str = int(chat) if chat.lstrip("-").isdigit() else chat

        async def send(client: Any) -> None:
            await client.send_message(entity, text, parse_mode=None, link_preview=False)

        self._run(send, min(ADMIN_TIMEOUT, self.settings.tg_timeout))  # an alert must not hold a job up long

    def edit_message(self, target: ResolvedChannel, message_id: int, html: str) -> None:
        async def edit(client: Any) -> None:
            text, entities = html_to_entities(html)
            entities = mention_entities(entities, await self._mentioned_users(client, html))
            request = functions.messages.EditMessageRequest(
                peer=input_peer(target), id=message_id, message=text, entities=entities or None
            )
            with contextlib.suppress(errors.MessageNotModifiedError):  # already this text: a retry
                await client(request)

        self._run(edit)

    def listen(self, channels: list[ResolvedChannel], *, tick: float = 1.0) -> Iterator[ListenUpdate]:
        """Telethon's update handlers (NewMessage, Album, MessageEdited, MessageDeleted) feed a queue on the
        client's loop thread; this generator hands them out in the caller's thread. A watchdog on the loop
        notices a connection Telethon gave up on, reconnects (with backoff) and reports both."""
        feed: queue.Queue[ListenUpdate] = queue.Queue()
        stopped = threading.Event()
        wanted = {marked_id(c): c.id for c in channels}
        handlers: list[tuple[Callable[[Any], Awaitable[None]], Any]] = []

        def put(update: ListenUpdate | None) -> None:
            if update is not None:
                feed.put(update)

        async def on_new(event: Any) -> None:
            if event.message.grouped_id is None:  # album items come as one events.Album
                put(to_update("new", event.chat_id, [event.message], wanted))

        async def on_album(event: Any) -> None:
            put(to_update("album", event.chat_id, list(event.messages), wanted))

        async def on_edit(event: Any) -> None:
            put(to_update("edit", event.chat_id, [event.message], wanted))

        async def on_delete(event: Any) -> None:
            if event.chat_id in wanted:  # only channel deletions name their chat
                put(ListenUpdate("delete", wanted[event.chat_id], deleted_ids=tuple(event.deleted_ids),
                                 received_at=time.time()))  # fmt: skip

        async def watchdog(client: Any) -> None:
            delay = 1.0
            while not stopped.is_set():
                await asyncio.sleep(tick)
                if self._client is not client:
                    return  # a new login replaced the client: the generator ends, the listener subscribes anew
                if client.is_connected():
                    continue
                put(ListenUpdate("disconnected", received_at=time.time(), detail="Telethon lost the connection"))
                while not stopped.is_set():
                    try:
                        async with self._connect_lock():
                            await client.connect()
                        await client.set_receive_updates(True)
                        break
                    except (OSError, TimeoutError, ConnectionError) as exc:
                        log.warning("reconnect failed (%s); next try in %.0f s", exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 60.0)
                delay = 1.0
                put(ListenUpdate("connected", received_at=time.time()))

        async def subscribe(client: Any) -> None:
            # Entities seen through a request are cached by Telethon, which then recovers gaps in their updates.
            await client.get_entity([input_peer(c) for c in channels])
            wiring = [(on_new, events.NewMessage()), (on_album, events.Album()),
                      (on_edit, events.MessageEdited()), (on_delete, events.MessageDeleted())]  # fmt: skip
            for handler, builder in wiring:
                client.add_event_handler(handler, builder)
                handlers.append((handler, builder))
            await client.set_receive_updates(True)
            subscribed.append(client)
            self._watchdog = asyncio.get_running_loop().create_task(watchdog(client))
            put(ListenUpdate("connected", received_at=time.time()))

        subscribed: list[Any] = []
        self._run(subscribe)
        try:
            while True:
                if self._client is not subscribed[0]:
                    # A new login replaced the client (a job noticed the new session file): the handlers are on
                    # the old one, so the live updates end here and the listener subscribes on the new client.
                    log.info("account %s: the client was replaced; the live updates end", self.profile.name)
                    return
                try:
                    yield feed.get(timeout=tick)
                except queue.Empty:
                    yield ListenUpdate("idle", received_at=time.time())
        finally:
            stopped.set()

            async def unsubscribe(client: Any) -> None:
                for handler, builder in handlers:
                    client.remove_event_handler(handler, builder)
                # The client stays for the jobs of a worker that hosted this listener: they ask, never listen.
                if client is self._client:  # a replaced client was disconnected already
                    await client.set_receive_updates(False)

            runner = self._runner
            if runner is not None and subscribed:  # the client subscribed to, even if a new login replaced it
                with contextlib.suppress(Exception):
                    runner.run(unsubscribe(subscribed[0]), 10)

    def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._client is not None:
            with contextlib.suppress(Exception):
                runner.run(self._client.disconnect(), 10)
        self._client = None
        runner.stop()


class TelethonGateways:
    """One TelethonGateway per account, each with its own client, session, proxy and event-loop thread, built on
    first use from the account's profile (one session must never serve two clients)."""

    def __init__(self, settings: Settings, profiles: Callable[[str], AccountProfile]) -> None:
        self.settings = settings
        self.profiles = profiles
        self._gateways: dict[str, TelethonGateway] = {}
        self._lock = threading.Lock()

    def gateway(self, account: str) -> TelethonGateway:
        with self._lock:
            found = self._gateways.get(account)
            if found is None:
                found = self._gateways[account] = TelethonGateway(self.settings, profile=self.profiles(account))
            return found

    def close(self) -> None:
        with self._lock:
            gateways, self._gateways = list(self._gateways.values()), {}
        for gateway in gateways:
            gateway.close()


def build_gateways(runtime: Any, profiles: Callable[[str], AccountProfile]) -> Any:
    """The process's Telegram: one Telethon gateway per account, or CONTENTQ_TG_GATEWAY's stand-in (benches,
    demos), which is one gateway for every account or a pool with `gateway(account)` of its own."""
    if runtime.settings.tg_gateway:  # CONTENTQ_TG_GATEWAY='module:factory'
        factory = pkgutil.resolve_name(runtime.settings.tg_gateway)
        return factory(runtime)
    return TelethonGateways(runtime.settings, profiles)
