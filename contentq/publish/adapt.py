"""A post adapted for one destination: what X and Instagram are sent, and notes on what was changed.

X: plain text with links kept (a link whose text is no address becomes "text (address)"), a Telegram @channel
written as t.me/channel; over 280 weighted characters a thread cut at paragraph and sentence breaks, numbered;
images 4 per tweet, spread over the thread (or the first 4, `x.images = "first4"`); other media left out.

Instagram: the caption as plain text without links (a link's text stays, `link_text` ends the caption under
`instagram.links = "bio"`), at most 30 hashtags, at most 2,200 characters (cut at a word with "…"); one image,
or a carousel of 2 to 10; a post without images gets an image card; other media left out.

Every change is said in `notes`, which the delivery keeps and `posts show` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contentq.content.plain import to_plain
from contentq.content.utf16 import utf16_len, utf16_to_index
from contentq.content.xtext import MAX_WEIGHT, split_thread, weighted_length
from contentq.routes import InstagramOptions, XOptions

X_IMAGES_PER_TWEET = 4
INSTAGRAM_CAPTION_MAX = 2200
INSTAGRAM_HASHTAGS_MAX = 30
INSTAGRAM_CAROUSEL_MAX = 10
ELLIPSIS = "…"

IMAGE_KINDS = ("photo",)
"""Media both X and Instagram take here as images (donor photos, generated images)."""


@dataclass
class XTweet:
    text: str
    images: list[Path] = field(default_factory=list)


@dataclass
class XPost:
    tweets: list[XTweet]
    notes: list[str] = field(default_factory=list)


@dataclass
class InstagramPost:
    caption: str
    images: list[Path]
    needs_card: bool = False
    notes: list[str] = field(default_factory=list)


def _images(media: list[dict[str, Any]], notes: list[str], platform: str) -> list[Path]:
    images = [Path(m["file"]) for m in media if m.get("kind") in IMAGE_KINDS]
    others = [m for m in media if m.get("kind") not in IMAGE_KINDS]
    if others:
        kinds = ", ".join(sorted({str(m.get("kind")) for m in others}))
        notes.append(f"{len(others)} media file(s) left out ({kinds}): only images go to {platform} for now")
    return images


def adapt_for_x(html: str, media: list[dict[str, Any]], options: XOptions) -> XPost:
    notes: list[str] = []
    plain = to_plain(html, links="inline", mentions=options.mentions)
    if plain.mentions_changed:
        notes.append(f"{plain.mentions_changed} Telegram @mention(s) written as t.me links (no X handles)")
    images = _images(media, notes, "X")
    groups = [images[i : i + X_IMAGES_PER_TWEET] for i in range(0, len(images), X_IMAGES_PER_TWEET)]
    if options.images == "first4" and len(groups) > 1:
        notes.append(
            f"{len(images) - X_IMAGES_PER_TWEET} of {len(images)} images left out: X takes 4 per post "
            '(x.images = "first4")'
        )
        groups = groups[:1]
    texts = split_thread(plain.text, numbering=options.numbering, at_least=max(1, len(groups)))
    if not texts:
        texts = [""]
    if len(texts) > 1:
        weight = weighted_length(plain.text)
        why = f"the text weighs {weight} of X's {MAX_WEIGHT}" if weight > MAX_WEIGHT else "its images"
        notes.append(f"a thread of {len(texts)} tweets ({why})")
    if len(groups) > 1:
        notes.append(f"{len(images)} images spread over {len(groups)} tweets, 4 each")
    tweets = [XTweet(text, groups[i] if i < len(groups) else []) for i, text in enumerate(texts)]
    return XPost(tweets, notes)


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` UTF-16 units: cut at the last space before it, with an ellipsis."""
    if utf16_len(text) <= limit:
        return text
    head = text[: utf16_to_index(text, limit - 1)]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space > len(head) // 2:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


def instagram_caption(html: str, options: InstagramOptions, notes: list[str]) -> str:
    plain = to_plain(html, links="drop", mentions=options.mentions, max_hashtags=INSTAGRAM_HASHTAGS_MAX)
    tail = ""
    if plain.links:
        if options.links == "bio" and options.link_text.strip():
            tail = "\n\n" + options.link_text.strip()
            notes.append(f"{len(plain.links)} link(s) removed (no links in captions): “{options.link_text.strip()}”")
        else:
            notes.append(f"{len(plain.links)} link(s) removed (no links in captions)")
    if plain.mentions_changed:
        notes.append(f"{plain.mentions_changed} Telegram @mention(s) written as t.me/… (no Instagram handles)")
    if plain.hashtags_removed:
        notes.append(f"{plain.hashtags_removed} hashtag(s) over Instagram's 30 removed")
    body = plain.text
    room = INSTAGRAM_CAPTION_MAX - utf16_len(tail)
    if utf16_len(body) > room:
        cut = _cut(body, room)
        notes.append(f"caption cut to {utf16_len(cut + tail)} of Instagram's {INSTAGRAM_CAPTION_MAX} characters")
        body = cut
    return (body + tail).strip()


def adapt_for_instagram(html: str, media: list[dict[str, Any]], options: InstagramOptions) -> InstagramPost:
    notes: list[str] = []
    caption = instagram_caption(html, options, notes)
    images = _images(media, notes, "Instagram")
    if len(images) > INSTAGRAM_CAROUSEL_MAX:
        notes.append(f"{len(images) - INSTAGRAM_CAROUSEL_MAX} of {len(images)} images left out: a carousel holds 10")
        images = images[:INSTAGRAM_CAROUSEL_MAX]
    if len(images) > 1:
        notes.append(f"a carousel of {len(images)} images")
    needs_card = not images
    if needs_card:
        notes.append("no image: an image card made from the text")
    return InstagramPost(caption, images, needs_card, notes)
