"""The Telegram gateway Protocol: everything contentq asks of Telegram, in plain synchronous calls.

The Telethon implementation runs one connected client per process on a long-lived event-loop thread;
tests use a scripted fake. Both raise Telethon's real error classes (`telethon.errors.FloodWaitError`,
`RandomIdDuplicateError`, `ChannelPrivateError`, …) and `ConnectionError` when Telegram is unreachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from contentq.errors import ContentqError

MediaKind = Literal["photo", "video", "video_note", "animation", "document", "audio", "voice", "sticker"]
"""What a media is sent as: video_note is a round video message, animation a GIF (an MP4 without sound)."""

MEDIA_KINDS: tuple[MediaKind, ...] = ("photo", "video", "video_note", "animation", "document", "audio", "voice",
                                      "sticker")  # fmt: skip

_ALBUM_GROUPS = {"photo": "visual", "video": "visual", "document": "document", "audio": "audio"}


def album_group(kind: str) -> str | None:
    """Which media may share an album: photos with videos, documents with documents, audio with audio; stickers,
    round videos, voice messages and GIFs never (None)."""
    return _ALBUM_GROUPS.get(kind)


def media_kind(kind: str | None) -> MediaKind:
    """A stored kind as a MediaKind; anything unknown goes as a document (a file)."""
    return next((k for k in MEDIA_KINDS if k == kind), "document")


@dataclass(frozen=True)
class ResolvedChannel:
    """A channel resolved once and cached in SQLite (channels table): id + access_hash avoid ResolveUsername."""

    ref: str  # normalised reference, '@name' or a numeric id
    id: int
    access_hash: int | None = None
    title: str = ""
    username: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    kind: MediaKind
    mime: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    file_name: str | None = None
    duration: float | None = None  # seconds, of a video, round video, GIF, voice or audio
    spoiler: bool = False  # hidden under a media spoiler until tapped
    title: str | None = None  # an audio file's title …
    performer: str | None = None  # … and performer
    emoji: str | None = None  # a sticker's emoji


@dataclass(frozen=True)
class FetchedMessage:
    """A message as read from a channel: its text (or caption) as Telegram HTML, and its media if any."""

    id: int
    date: datetime
    html: str = ""
    grouped_id: int | None = None
    is_forward: bool = False
    media: MediaInfo | None = None
    views: int | None = None
    forward_name: str | None = None
    """A forwarded message's origin: the channel's or author's name, when Telegram tells it."""
    forward_link: str | None = None
    """… and a link to the original post (t.me/name/123, t.me/c/id/123), when it is a channel post."""
    paid_stars: int | None = None
    """Paid media (its price in stars; 0 when unknown): its content cannot be reposted, the post is filtered."""


@dataclass(frozen=True)
class OutgoingMedia:
    """One file to send and what it is sent as (the attributes Telegram shows: size, length, title …)."""

    path: Path
    kind: MediaKind
    mime: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    spoiler: bool = False
    title: str | None = None
    performer: str | None = None
    file_name: str | None = None  # the name a document is shown with (the stored file is named by its hash)
    emoji: str | None = None

    @property
    def name(self) -> str:
        """The file name it is sent under."""
        return self.file_name or f"{self.kind}{self.path.suffix}"


@dataclass
class OutgoingPart:
    """One request of a publication: a text message, one media with caption, or an album (2–10 media)."""

    html: str = ""
    media: list[OutgoingMedia] = field(default_factory=list)

    @property
    def kind(self) -> Literal["text", "media", "album"]:
        if not self.media:
            return "text"
        return "media" if len(self.media) == 1 else "album"


UpdateKind = Literal["new", "album", "edit", "delete", "disconnected", "connected", "idle"]


@dataclass(frozen=True)
class ListenUpdate:
    """One live event from the donor channels, as `TelegramGateway.listen` yields them.

    new: one message (`messages[0]`; an album item when its grouped_id is set: the Telethon gateway groups
    them into one `album` update, a gateway may also deliver them one by one); album: every item of one
    album; edit: the message as it reads now; delete: `deleted_ids` of the channel; disconnected/connected:
    the live connection dropped / is back (what arrived meanwhile is not delivered live: catch up);
    idle: nothing arrived for `tick` seconds (the listener writes its heartbeat)."""

    kind: UpdateKind
    channel_id: int | None = None
    messages: tuple[FetchedMessage, ...] = ()
    deleted_ids: tuple[int, ...] = ()
    received_at: float = 0.0  # time.time() when the gateway received it
    detail: str = ""  # why a connection dropped


class NotLoggedInError(ContentqError):
    """The account has no session (never logged in, or its session file is gone): `contentq accounts login`."""


STATS_BATCH = 100
"""Message ids per `message_stats` call: channels.getMessages takes at most 100."""


@dataclass(frozen=True)
class MessageStats:
    """What one channel message achieved so far (insights): views, forwards, comments and reactions by emoji
    (a custom emoji as 'custom:<document id>', paid star reactions as '⭐')."""

    id: int
    views: int | None = None
    forwards: int | None = None
    replies: int | None = None
    reactions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Account:
    id: int
    username: str | None
    name: str
    phone: str | None
    premium: bool = False


@runtime_checkable
class TelegramGateway(Protocol):
    def ensure_ready(self) -> None:
        """Connected and authorized, reconnecting if needed; raises ConnectionError or a Telethon auth error."""

    def reconnect(self) -> None:
        """Drop the connection and connect again."""

    def account(self) -> Account:
        """The logged-in user (also tells whether it is Premium: longer captions)."""

    def resolve(self, ref: str) -> ResolvedChannel:
        """Resolve '@name', a t.me link or a numeric id; callers cache the result."""

    def fetch_messages(self, channel: ResolvedChannel, *, min_id: int, limit: int) -> list[FetchedMessage]:
        """Messages with id > min_id, returned oldest first, at most `limit`.

        Which ones when there are more than `limit`: with min_id 0 (a first run, nothing collected yet) the
        NEWEST `limit`; with min_id > 0 the OLDEST `limit` right after min_id, so a caller that moves min_id
        to the last id it stored pages through everything, none skipped."""

    def download_media(self, channel: ResolvedChannel, message_id: int) -> bytes:
        """The media bytes of one message."""

    def send(self, target: ResolvedChannel, part: OutgoingPart, random_ids: list[int]) -> list[int]:
        """Send one part with the given random ids (one per media item of an album, else one) through the raw
        request, so a resend with the same ids is refused with RandomIdDuplicateError; returns message ids."""

    def delete_messages(self, target: ResolvedChannel, message_ids: list[int]) -> None:
        """Delete messages (cancelling a half-sent batch)."""

    def recent_messages(self, target: ResolvedChannel, limit: int = 20) -> list[FetchedMessage]:
        """The newest messages of a channel, newest first: settles an uncertain send by looking."""

    def send_admin(self, chat: str, text: str) -> None:
        """A plain-text message to the admin chat (notifier backend)."""

    def edit_message(self, target: ResolvedChannel, message_id: int, html: str) -> None:
        """Replace the text (or caption) of one of our messages; editing to the same text is not an error."""

    def message_stats(self, channel: ResolvedChannel, message_ids: list[int]) -> list[MessageStats]:
        """Views, forwards, replies and reactions of up to STATS_BATCH messages of a channel in ONE request
        (channels.getMessages); messages that no longer exist are left out."""

    def subscriber_count(self, channel: ResolvedChannel) -> int:
        """The channel's subscriber count (channels.getFullChannel: participants_count)."""

    def listen(self, channels: list[ResolvedChannel], *, tick: float = 1.0) -> Iterator[ListenUpdate]:
        """Live updates of these channels, as a blocking iterator (fed from the client's loop thread), until
        `close()`: yields `connected` once listening, an `idle` update whenever `tick` seconds pass without
        one, and `disconnected`/`connected` around a lost connection (the gateway reconnects by itself)."""

    def close(self) -> None:
        """Disconnect."""
