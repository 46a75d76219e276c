"""Rendering a post into the parts it is sent as.

A text post is one message; media go as one media message or one album (2–10 items, a single send), each
as what it is (a sticker, a round video, a voice message, a GIF, an audio file with its title …). Media that
cannot share an album (stickers, round videos, voice messages, GIFs; documents and audio only among their
own kind) go as messages of their own, in order. A caption longer than the limit (CONTENTQ_CAPTION_LIMIT,
2048 for a Premium account), or on a sticker or round video (Telegram shows none), makes the media go first
without caption and the text follow as its own message. Long text is split (or cut, under the route's
`long_text = "truncate"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentq.content.html import visible_len_utf16
from contentq.content.split import SplitError, credit_html, custom_emoji_count, plain_emoji, split_html, truncate
from contentq.integrations.telegram.gateway import (
    Account,
    OutgoingMedia,
    OutgoingPart,
    ResolvedChannel,
    album_group,
    media_kind,
)
from contentq.publish import PublishError
from contentq.routes import Route
from contentq.settings import Settings
from contentq.store import Store

ALBUM_MAX = 10
"""Telegram sends at most 10 media in one album."""

PREMIUM_CAPTION_LIMIT = 2048
"""Captions a Premium account may send."""

CAPTIONLESS = frozenset({"sticker", "video_note"})
"""Kinds Telegram shows without a caption: a post's text goes as its own message after them."""


@dataclass
class Rendered:
    html: str
    parts: list[OutgoingPart]
    media: list[dict[str, Any]] = field(default_factory=list)
    caption_limit: int = 1024
    caption_moved: bool = False
    captionless: str | None = None
    """The kind (sticker, video_note) whose message cannot carry the text: it went as its own message."""
    long_text: str = "split"
    truncated: bool = False
    """Cut with an ellipsis (`long_text = "truncate"`)."""
    custom_emoji: int = 0
    """Custom emoji in the text (sent as such, or as their plain emoji when the account cannot)."""
    credited: bool = False
    """A forward_credit was added."""
    notes: list[str] = field(default_factory=list)
    """Kept on the published post (state_reason), without an alert."""

    @property
    def text_parts(self) -> int:
        return sum(1 for part in self.parts if part.kind == "text")


def post_html(post: dict[str, Any]) -> str:
    html = post.get("rewrite_html")
    return str(html if html is not None else post.get("text_html") or "")


def post_media(store: Store, settings: Settings, post_id: int) -> list[dict[str, Any]]:
    """The media files of a post, donor media first (in album order), then generated images."""
    rows = store.query(
        "SELECT * FROM media WHERE post_id = ? AND path IS NOT NULL ORDER BY origin = 'generated', position, id",
        (post_id,),
    )
    for row in rows:
        row["file"] = settings.media_dir / row["path"]
        if not row["file"].exists():
            raise PublishError(
                f"media file {row['file']} of post {post_id} is missing; re-collect the post or remove the media"
            )
    return rows


def outgoing_media(row: dict[str, Any]) -> OutgoingMedia:
    """A media row (with its `file`) as what is sent."""
    return OutgoingMedia(
        path=Path(row["file"]), kind=media_kind(row.get("kind")), mime=row.get("mime"), width=row.get("width"),
        height=row.get("height"), duration=row.get("duration"), spoiler=bool(row.get("spoiler")),
        title=row.get("title"), performer=row.get("performer"), file_name=row.get("file_name"), emoji=row.get("emoji"),
    )  # fmt: skip


def media_chunks(items: list[OutgoingMedia]) -> list[list[OutgoingMedia]]:
    """The sends media need, in order: runs of items that may share an album (at most ALBUM_MAX), every other
    item alone."""
    chunks: list[list[OutgoingMedia]] = []
    for item in items:
        group = album_group(item.kind)
        last = chunks[-1] if chunks else None
        if last is not None and group is not None and album_group(last[0].kind) == group and len(last) < ALBUM_MAX:
            last.append(item)
        else:
            chunks.append([item])
    return chunks


def render(
    post: dict[str, Any],
    media: list[dict[str, Any]],
    *,
    caption_limit: int,
    text_limit: int,
    route: Route | None = None,
    custom_emoji: bool = True,
) -> Rendered:
    """The parts to send for a post, in order (see the module doc); `custom_emoji`: whether the account can
    send them (else each goes as its plain emoji)."""
    long_text = route.long_text if route is not None else "split"
    html = post_html(post).strip()
    rendered = Rendered(html, [], media, caption_limit, long_text=long_text)
    if route is not None and route.forward_credit and post.get("is_forward"):
        credit = credit_html(route.forward_credit, name=post.get("forward_name"), link=post.get("forward_link"))
        if credit is None:
            rendered.notes.append("forwarded post: its origin is not known, so no forward_credit was added")
        else:
            html = f"{html}\n\n{credit}" if html else credit
            rendered.credited = True
    rendered.custom_emoji = custom_emoji_count(html)
    if rendered.custom_emoji and not custom_emoji:
        html = plain_emoji(html)
    rendered.html = html
    length = visible_len_utf16(html)
    if not media and not html:
        raise PublishError(f"post {post['id']} has neither text nor media; edit it with `contentq posts edit`")
    chunks = media_chunks([outgoing_media(m) for m in media])
    captionless = next((c[0].kind for c in chunks[:1] if c[0].kind in CAPTIONLESS), None)
    if media and (length <= caption_limit and captionless is None or not html):
        rendered.parts = [OutgoingPart(html=html if i == 0 else "", media=chunk) for i, chunk in enumerate(chunks)]
        return rendered
    # The text is a message of its own (after the media, if any): split, or cut under `truncate`.
    rendered.caption_moved = bool(media)
    rendered.captionless = captionless if length <= caption_limit else None
    if long_text == "truncate":
        cut, rendered.truncated = truncate(html, text_limit)
        texts = [cut]
        if rendered.truncated:
            rendered.notes.append(
                f"text cut to {visible_len_utf16(cut)} of its {length} characters (UTF-16 units) with an ellipsis: "
                f'the route has long_text = "truncate"'
            )
    else:
        try:
            texts = split_html(html, text_limit, number=bool(route and route.number_parts))
        except SplitError as exc:
            raise PublishError(f"post {post['id']}: {exc}") from None
    rendered.parts = [OutgoingPart(html="", media=chunk) for chunk in chunks] + [OutgoingPart(html=t) for t in texts]
    return rendered


def caption_limit_for(settings: Settings, account: Account | None) -> int:
    if account is not None and account.premium:
        return max(settings.caption_limit, PREMIUM_CAPTION_LIMIT)
    return settings.caption_limit


def message_link(channel: ResolvedChannel, message_id: int) -> str:
    if channel.username:
        return f"https://t.me/{channel.username}/{message_id}"
    raw = str(channel.id)
    if raw.startswith("-100"):
        raw = raw[4:]
    return f"https://t.me/c/{raw.lstrip('-')}/{message_id}"
