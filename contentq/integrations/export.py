"""Telegram Desktop channel export (`result.json`) read and checked: messages, their text as Telegram HTML,
their media files, and the albums they form (`contentq.intake.imports` stores them as posts).

The whole file is read and checked first (a malformed message is named in the error). Exports have no
grouped_id: an album is a media message followed by media messages of the same second, of kinds that share
an album, without text of their own and from the same origin (see `export_groups`). Service messages and
the messages Telegram Desktop marks "unsupported" (media it does not know) are skipped and counted.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telethon.tl import types as tl

from contentq.content.utf16 import utf16_len
from contentq.errors import ContentqError
from contentq.integrations.telegram.formatting import entities_to_html
from contentq.integrations.telegram.gateway import album_group

ALBUM_MAX = 10
"""Telegram albums hold 2–10 items."""

_PLACEHOLDER = re.compile(r"^\(File .*\)$", re.DOTALL)  # "(File not included. Change data exporting settings…)"

_MEDIA_KINDS = {
    "video_file": "video",
    "animation": "animation",
    "video_message": "video_note",
    "audio_file": "audio",
    "voice_message": "voice",
    "sticker": "sticker",
}
"""Telegram Desktop's `media_type` → what the file is sent as."""

_STICKER_MIME = {".webp": "image/webp", ".tgs": "application/x-tgsticker", ".webm": "video/webm"}
"""Telegram Desktop writes no `mime_type` for stickers (older versions): the file's extension tells."""

SKIPPED_SERVICE = "service message"
SKIPPED_UNSUPPORTED = "unsupported message"

MAX_EXPORT_BYTES = 1024 * 1024 * 1024
"""A larger result.json is refused (it is read whole into memory; a channel's export is far smaller)."""

ID_MAX = 2**63 - 1
"""Message ids and sizes are stored as SQLite integers (signed 64-bit)."""

_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)  # str.isdigit() also takes '²' and other digits int() refuses

_excerpt = reprlib.Repr()
_excerpt.maxstring, _excerpt.maxother, _excerpt.maxlevel, _excerpt.maxlist, _excerpt.maxdict = 60, 60, 2, 4, 4


@dataclass
class ExportMedia:
    kind: str
    path: Path | None  # None: the file is not in the export (a placeholder or a missing file)
    mime: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None  # `duration_seconds`
    spoiler: bool = False  # `media_spoiler`
    title: str | None = None  # an audio file's `title` and `performer`
    performer: str | None = None
    file_name: str | None = None
    emoji: str | None = None  # a sticker's `sticker_emoji`


@dataclass
class ExportMessage:
    id: int
    date: datetime
    stamp: str  # what album items share: date_unixtime, or the date for older exports
    html: str = ""
    is_forward: bool = False
    forward_name: str | None = None  # "forwarded_from": the origin's name (exports carry no link to it)
    media: ExportMedia | None = None
    unsupported: str | None = None  # a poll, location … that contentq does not repost (see _unsupported)
    paid_stars: int | None = None  # paid media (`paid_stars_amount`): its media is not in the export


_UNSUPPORTED = {"poll": "poll", "location_information": "location", "contact_information": "contact",
                "game_title": "game", "dice": "dice", "invoice_information": "invoice"}  # fmt: skip


def _unsupported(raw: dict[str, Any]) -> str | None:
    """What kind of message the export holds that contentq cannot repost, if any."""
    return next((kind for key, kind in _UNSUPPORTED.items() if key in raw), None)


@dataclass
class Export:
    path: Path
    name: str
    messages: list[ExportMessage]
    skipped: dict[str, int] = field(default_factory=dict)  # messages that are not posts, by kind

    @property
    def service_skipped(self) -> int:
        return self.skipped.get(SKIPPED_SERVICE, 0)

    @property
    def missing_files(self) -> int:
        return sum(1 for m in self.messages if m.media is not None and m.media.path is None)


class ExportError(ContentqError):
    """A result.json that cannot be imported."""


# -- reading ---------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A short excerpt of a value for an error message (an export can put megabytes in one field)."""
    return _excerpt.repr(value)


def _checked(where: str, value: str, what: str) -> str:
    """`value` if it can be stored: JSON's \\ud800 escapes can make lone surrogates, which UTF-8 cannot hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ExportError(f"{where}: {what} holds an invalid character (a lone UTF-16 surrogate)") from None
    return value


def _read_bytes(path: Path) -> bytes:
    """The export file's bytes: a regular file of at most MAX_EXPORT_BYTES (not a device, FIFO or folder)."""
    try:
        # stat before open: opening a FIFO with no writer blocks forever.
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise ExportError(f"{path}: not a regular file; give the result.json of a Telegram Desktop export")
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):  # replaced between the two looks
                raise ExportError(f"{path}: not a regular file; give the result.json of a Telegram Desktop export")
            data = handle.read(MAX_EXPORT_BYTES + 1)
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file; give the result.json of a Telegram Desktop export") from None
    except IsADirectoryError:
        raise ExportError(f"{path} is a folder; give the result.json of a Telegram Desktop export") from None
    except OSError as exc:
        raise ExportError(
            f"{path}: cannot read it ({exc.strerror or exc}); check the path and its permissions"
        ) from None
    if len(data) > MAX_EXPORT_BYTES:
        raise ExportError(
            f"{path}: larger than {MAX_EXPORT_BYTES // 2**20} MB; export the channel in parts (by date range)"
        )
    return data


def read_export(path: Path) -> Export:
    """Read and check a whole export; raises ExportError naming the file and the message at fault."""
    if path.is_dir():
        path = path / "result.json"
    raw_bytes = _read_bytes(path)
    try:
        data = json.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise ExportError(f"{path}: not UTF-8 text; export again as JSON (machine-readable)") from None
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "export the channel again in the JSON format"
        ) from None
    except RecursionError:
        raise ExportError(f"{path}: nested too deeply to be a Telegram Desktop export") from None
    del raw_bytes
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        whole_account = isinstance(data, dict) and "chats" in data
        hint = " (a whole-account export: export the one channel instead)" if whole_account else ""
        raise ExportError(f"{path}: not a Telegram Desktop channel export, there is no 'messages' list{hint}")
    messages: list[ExportMessage] = []
    skipped: dict[str, int] = {}
    seen: set[int] = set()
    for index, raw in enumerate(data["messages"]):
        message = _read_message(path, index, raw, seen)
        if isinstance(message, str):
            skipped[message] = skipped.get(message, 0) + 1
        else:
            messages.append(message)
    name = data.get("name")
    name = _checked(str(path), name, "the channel name") if isinstance(name, str) else ""
    return Export(path=path, name=name, messages=messages, skipped=skipped)


def _read_message(path: Path, index: int, raw: Any, seen: set[int] | None = None) -> ExportMessage | str:
    """One message of the export, or why it is skipped (SKIPPED_SERVICE, SKIPPED_UNSUPPORTED); `seen` collects
    ids to refuse a repeated one."""
    where = f"{path}: message #{index + 1}"
    if not isinstance(raw, dict):
        raise ExportError(f"{where} is not an object")
    msg_id = raw.get("id")
    if not isinstance(msg_id, int) or isinstance(msg_id, bool):
        raise ExportError(f"{where} has no numeric 'id'")
    if not 0 < msg_id <= ID_MAX:
        raise ExportError(f"{where}: id {_show(msg_id)} is out of range (1 to {ID_MAX}); this is not a Telegram export")
    if seen is not None:
        if msg_id in seen:
            raise ExportError(
                f"{path}: message id {msg_id} appears twice; the export is damaged, nothing was imported: "
                "export the channel again"
            )
        seen.add(msg_id)
    where = f"{path}: message {msg_id}"
    kind = raw.get("type", "message")
    if kind == "service":
        return SKIPPED_SERVICE
    if kind == "unsupported":  # media Telegram Desktop does not know: it writes only the id (no date, no text)
        return SKIPPED_UNSUPPORTED
    if kind != "message":
        raise ExportError(f"{where}: unknown type {_show(kind)} (expected 'message', 'service' or 'unsupported')")
    date, stamp = _read_date(where, raw)
    return ExportMessage(
        id=msg_id,
        date=date,
        stamp=stamp,
        html=text_to_html(raw.get("text", ""), where),
        is_forward=bool(raw.get("forwarded_from")),
        forward_name=_forward_name(where, raw.get("forwarded_from")),
        media=_read_media(path.parent, where, raw),
        unsupported=_unsupported(raw),
        paid_stars=_number(where, raw, "paid_stars_amount"),
    )


def _forward_name(where: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return _checked(where, value.strip(), "'forwarded_from'")[:256]


def _read_date(where: str, raw: dict[str, Any]) -> tuple[datetime, str]:
    unix = raw.get("date_unixtime")
    if unix is not None:
        text = str(unix).strip() if isinstance(unix, str | int) and not isinstance(unix, bool) else ""
        if not _DIGITS.fullmatch(text):
            raise ExportError(f"{where}: 'date_unixtime' is not a number of seconds ({_show(unix)})")
        try:
            return datetime.fromtimestamp(int(text), UTC), text
        except (OverflowError, OSError, ValueError):
            raise ExportError(f"{where}: 'date_unixtime' is out of range ({_show(unix)})") from None
    value = raw.get("date")
    if not isinstance(value, str):
        raise ExportError(f"{where}: 'date' is missing")
    try:
        date = datetime.fromisoformat(value)
        date = date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC)
    except ValueError:
        raise ExportError(f"{where}: 'date' is not a date ({_show(value)})") from None
    except OverflowError:  # 0001-01-01 with a positive offset is before the calendar in UTC
        raise ExportError(f"{where}: 'date' is out of range ({_show(value)})") from None
    return date, value


def _number(where: str, raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExportError(f"{where}: {key!r} is not a number ({_show(value)})")
    if not 0 <= value <= ID_MAX:
        raise ExportError(f"{where}: {key!r} is out of range ({_show(value)})")
    return value


def _seconds(where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**31:
        raise ExportError(f"{where}: 'duration_seconds' is not a number of seconds ({_show(value)})")
    return float(value)


def _text_field(where: str, raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    return _checked(where, value.strip(), repr(key))[:256]


def _read_media(folder: Path, where: str, raw: dict[str, Any]) -> ExportMedia | None:
    width, height = _number(where, raw, "width"), _number(where, raw, "height")
    spoiler = raw.get("media_spoiler") in (True, 1, "true")
    if "photo" in raw:
        return ExportMedia(
            "photo", _media_path(folder, where, raw["photo"], "photo"), "image/jpeg",
            _number(where, raw, "photo_file_size"), width, height, spoiler=spoiler,
        )  # fmt: skip
    if "file" in raw:
        media_type = raw.get("media_type")
        kind = _MEDIA_KINDS.get(media_type, "document") if isinstance(media_type, str) else "document"
        path = _media_path(folder, where, raw["file"], "file")
        mime = _text_field(where, raw, "mime_type")
        if mime is None and kind == "sticker":
            suffix = Path(raw["file"]).suffix.lower() if isinstance(raw["file"], str) else ""
            mime = _STICKER_MIME.get(suffix)
        return ExportMedia(
            kind, path, mime, _number(where, raw, "file_size"), width, height,
            duration=_seconds(where, raw.get("duration_seconds")), spoiler=spoiler,
            title=_text_field(where, raw, "title"), performer=_text_field(where, raw, "performer"),
            file_name=_text_field(where, raw, "file_name"), emoji=_text_field(where, raw, "sticker_emoji"),
        )  # fmt: skip
    return None


def _media_path(folder: Path, where: str, value: Any, key: str) -> Path | None:
    if not isinstance(value, str):
        raise ExportError(f"{where}: {key!r} is not a file path ({_show(value)})")
    if _PLACEHOLDER.match(value.strip()):
        return None
    try:
        path = (folder / value).resolve()
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system
        raise ExportError(f"{where}: {key!r} is not a usable file path ({_show(value)})") from None
    if not path.is_relative_to(folder.resolve()):
        raise ExportError(f"{where}: {key!r} points outside the export folder ({_show(value)})")
    return path if path.is_file() else None


# -- text --------------------------------------------------------------------------------------------


def _entity(kind: str, part: dict[str, Any], offset: int, length: int, where: str) -> Any | None:
    """The Telethon entity for one text part of the export, None for parts Telegram formats by itself."""
    simple = {
        "bold": tl.MessageEntityBold,
        "italic": tl.MessageEntityItalic,
        "underline": tl.MessageEntityUnderline,
        "strikethrough": tl.MessageEntityStrike,
        "spoiler": tl.MessageEntitySpoiler,
        "code": tl.MessageEntityCode,
        "link": tl.MessageEntityUrl,
        "email": tl.MessageEntityEmail,
    }
    if kind in simple:
        return simple[kind](offset=offset, length=length)
    if kind == "pre":
        language = part.get("language")
        language = _checked(where, language, "a code language") if isinstance(language, str) else ""
        return tl.MessageEntityPre(offset=offset, length=length, language=language)
    if kind == "text_link":
        href = part.get("href")
        if not isinstance(href, str) or not href:
            raise ExportError(f"{where}: a text_link without 'href'")
        return tl.MessageEntityTextUrl(offset=offset, length=length, url=_checked(where, href, "a link"))
    user_id = part.get("user_id")
    if kind == "mention_name" and isinstance(user_id, str | int) and _DIGITS.fullmatch(str(user_id)):
        return tl.MessageEntityMentionName(offset=offset, length=length, user_id=int(user_id))
    if kind in ("blockquote", "expandable_blockquote"):
        collapsed = kind == "expandable_blockquote" or bool(part.get("collapsed"))
        return tl.MessageEntityBlockquote(offset=offset, length=length, collapsed=collapsed)
    document_id = part.get("document_id")
    emoji_id = int(document_id) if isinstance(document_id, str | int) and _DIGITS.fullmatch(str(document_id)) else 0
    if kind == "custom_emoji" and 0 < emoji_id < 2**63:
        # Telegram Desktop writes the emoji's document id, or a file path when it exported the sticker file:
        # only the id can be sent again; otherwise the part stays its plain emoji.
        return tl.MessageEntityCustomEmoji(offset=offset, length=length, document_id=emoji_id)
    return None  # plain, mention, hashtag, cashtag, bot_command, phone, bank_card, custom_emoji as a file …


def text_to_html(value: Any, where: str = "message") -> str:
    """An export's `text` (a string, or a list of strings and {type, text, href?} objects) as Telegram HTML."""
    if isinstance(value, str):
        return entities_to_html(_checked(where, value, "'text'"), [])
    if not isinstance(value, list):
        raise ExportError(f"{where}: 'text' must be a string or a list, not {type(value).__name__}")
    pieces: list[str] = []
    entities = []
    offset = 0
    for number, part in enumerate(value, start=1):
        text: Any
        if isinstance(part, str):
            text, kind = part, "plain"
        elif isinstance(part, dict):
            text, kind = part.get("text"), str(part.get("type", "plain"))
            if not isinstance(text, str):
                raise ExportError(f"{where}: text part {number} has no 'text' string")
        else:
            raise ExportError(f"{where}: text part {number} is neither a string nor an object")
        length = utf16_len(_checked(where, text, f"text part {number}"))
        if length and (entity := _entity(kind, part if isinstance(part, dict) else {}, offset, length, where)):
            entities.append(entity)
        pieces.append(text)
        offset += length
    return entities_to_html("".join(pieces), entities)


# -- albums ------------------------------------------------------------------------------------------


def _joins_album(album: list[ExportMessage], message: ExportMessage) -> bool:
    """Whether `message` is one more item of the album `album` opened (see export_groups)."""
    first = album[0]
    if message.media is None or first.media is None or any(m.media is None for m in album):
        return False
    group = album_group(first.media.kind)
    return (
        not message.html.strip()  # an item with its own text is a post of its own
        and message.stamp == first.stamp
        and len(album) < ALBUM_MAX
        and group is not None
        and album_group(message.media.kind) == group
        and (message.is_forward, message.forward_name) == (first.is_forward, first.forward_name)
        and message.paid_stars is None
        and first.paid_stars is None
    )


def export_groups(messages: list[ExportMessage]) -> list[list[ExportMessage]]:
    """Posts, from an export (which has no grouped_id): a media message opens an album that the next media
    messages join when they are of the same second, without text of their own (a second caption means a
    second post), of kinds that share an album (photos and videos; documents; audio) and, for forwards, from
    the same origin; at most 10 items. Everything else is a post of its own."""
    groups: list[list[ExportMessage]] = []
    for message in messages:
        if groups and _joins_album(groups[-1], message):
            groups[-1].append(message)
        else:
            groups.append([message])
    return groups
