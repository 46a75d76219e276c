"""A Telegram-like preview of a post, part by part: the one renderer of the outbox's post.html and the web panel.

Each part becomes a chat bubble as Telegram shows it in a channel: a single photo at bubble width, an album in
Telegram's mosaic (rows of photos whose heights make each row fill the width, chosen like Telegram's grouped
layout), the text with its formatting, spoilers hidden until clicked, links, #hashtags, @mentions and $cashtags
styled, custom emoji marked, and the channel name and time on the bubble.

The output is safe to put in a page: only http/https/tg/mailto links survive (`safe_href`, applied when the
Telegram HTML is parsed), every text is escaped, and there is no inline style or script — the mosaic is an SVG
whose geometry is in attributes, so a strict Content-Security-Policy (no 'unsafe-inline') is kept. The look is
`contentq/data/preview.css`; clicking a spoiler needs `contentq/data/preview.js`.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from itertools import combinations

from contentq.content.html import Run, Tag, find_urls, parse_html, render_runs, safe_href

BUBBLE_UNITS = 1000
"""The mosaic is laid out in a 1000-unit wide SVG that CSS scales to the bubble's width."""

GAP = 6
"""Space between album tiles, in the same units (2–3 px at bubble width, as in Telegram)."""

MAX_PER_ROW = 4

_ENTITY = re.compile(r"(?<![\w#@$])(?:#[^\W\d_][\w]*|#\d+[^\W\d][\w]*|@[A-Za-z][A-Za-z0-9_]{3,31}|\$[A-Z]{2,8})\b")


@dataclass(frozen=True)
class PreviewMedia:
    src: str
    kind: str = "photo"  # photo | video | video_note | animation | document | audio | voice | sticker
    width: int | None = None
    height: int | None = None
    name: str = ""
    duration: float | None = None
    spoiler: bool = False
    title: str | None = None
    performer: str | None = None
    emoji: str | None = None
    mime: str | None = None

    @property
    def ratio(self) -> float:
        if self.width and self.height and self.width > 0 and self.height > 0:
            return min(3.0, max(1 / 3, self.width / self.height))  # panoramas and strips are cropped
        return 1.0


@dataclass
class PreviewPart:
    html: str = ""
    media: list[PreviewMedia] = field(default_factory=list)


@dataclass(frozen=True)
class Tile:
    media: PreviewMedia
    x: float
    y: float
    width: float
    height: float


# -- album mosaic -----------------------------------------------------------------------------------------


def _partitions(count: int) -> list[tuple[int, ...]]:
    """Every way to cut `count` items, in order, into rows of 1..MAX_PER_ROW."""
    out = []
    for rows in range(1, count + 1):
        for cuts in combinations(range(1, count), rows - 1):
            sizes = tuple(b - a for a, b in zip((0, *cuts), (*cuts, count), strict=True))
            if all(1 <= s <= MAX_PER_ROW for s in sizes):
                out.append(sizes)
    return out


def _row_height(ratios: list[float]) -> float:
    return (BUBBLE_UNITS - GAP * (len(ratios) - 1)) / sum(ratios)


def mosaic(items: list[PreviewMedia]) -> tuple[list[Tile], float]:
    """Tiles of an album and the album's height, for a width of BUBBLE_UNITS.

    Like Telegram's grouped layout: rows keep the items' order, each row is as tall as it must be for its items
    to fill the width at their aspect ratios, and of all ways to cut the items into rows the one is chosen whose
    total height is closest to a square-ish album, with no row far taller or thinner than the others and the
    busier rows at the bottom (2 over 3 for five photos)."""
    if not items:
        return [], 0.0
    ratios = [m.ratio for m in items]
    target = BUBBLE_UNITS * (1.0 if len(items) > 1 else 1 / ratios[0])
    best: tuple[float, tuple[int, ...]] | None = None
    for sizes in _partitions(len(items)):
        heights, start = [], 0
        for size in sizes:
            heights.append(_row_height(ratios[start : start + size]))
            start += size
        total = sum(heights) + GAP * (len(sizes) - 1)
        score = abs(total - target) / target
        score += 0.5 * (max(heights) - min(heights)) / BUBBLE_UNITS  # rows of even height read as one album
        score += sum(0.4 for h in heights if h < BUBBLE_UNITS * 0.18)  # slivers
        score += sum(0.15 for a, b in zip(sizes, sizes[1:], strict=False) if a > b)  # busier rows below
        if len(items) > 2:
            score += sum(0.3 for s in sizes if s == 1)  # a lone photo per row is a list, not a mosaic
        if best is None or score < best[0] - 1e-9:
            best = (score, sizes)
    assert best is not None
    tiles: list[Tile] = []
    y, start = 0.0, 0
    for size in best[1]:
        row = ratios[start : start + size]
        height = _row_height(row)
        x = 0.0
        for offset, ratio in enumerate(row):
            width = BUBBLE_UNITS - x if offset == size - 1 else height * ratio  # the last tile absorbs rounding
            tiles.append(Tile(items[start + offset], round(x, 1), round(y, 1), round(width, 1), round(height, 1)))
            x += width + GAP
        y += height + GAP
        start += size
    return tiles, round(y - GAP, 1)


def _esc(value: object) -> str:
    return htmllib.escape(str(value), quote=True)


def _placeholder(tile: Tile, label: str) -> str:
    cx, cy = tile.x + tile.width / 2, tile.y + tile.height / 2
    r = min(tile.width, tile.height) / 6
    return (
        f'<rect class="tg-tile-bg" x="{tile.x}" y="{tile.y}" width="{tile.width}" height="{tile.height}"/>'
        f'<circle class="tg-play" cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}"/>'
        f'<text class="tg-tile-label" x="{cx:.1f}" y="{tile.y + tile.height - 14:.1f}">{_esc(label)}</text>'
    )


def album_svg(items: list[PreviewMedia]) -> str:
    tiles, height = mosaic(items)
    body = []
    for number, tile in enumerate(tiles, start=1):
        m = tile.media
        # Each tile is a link with a name (a screen reader reads "photo 2 of 5"), in an SVG that is a group of
        # links, not an image (an image holds nothing to press).
        label = f' aria-label="{_esc(m.kind)} {number} of {len(items)}"'
        if m.kind == "photo":
            hidden = " tg-tile-spoiler" if m.spoiler else ""  # blurred, as Telegram shows a media spoiler
            body.append(
                f'<a href="{_esc(m.src)}" target="_blank" rel="noopener"{label}>'
                f'<image class="tg-tile{hidden}" href="{_esc(m.src)}"'
                f' x="{tile.x}" y="{tile.y}" width="{tile.width}" height="{tile.height}"'
                ' preserveAspectRatio="xMidYMid slice"/></a>'
            )
        else:
            body.append(
                f'<a href="{_esc(m.src)}" target="_blank" rel="noopener"{label}>'
                + _placeholder(tile, m.name or m.kind)
                + "</a>"
            )
    return (
        f'<svg class="tg-album" viewBox="0 0 {BUBBLE_UNITS} {height}" data-items="{len(items)}" role="group"'
        f' aria-label="album of {len(items)}">' + "".join(body) + "</svg>"
    )


def _length(seconds: float | None) -> str:
    """' · 1:07' for a known length."""
    if not seconds:
        return ""
    whole = round(seconds)
    return f" · {whole // 60}:{whole % 60:02d}"


def media_label(item: PreviewMedia) -> str:
    """What the media is sent as, in words: 'round video · 0:12', 'voice message · 0:07', 'GIF', 'sticker 😀'."""
    if item.kind == "audio":
        track = " — ".join(p for p in (item.performer, item.title) if p) or item.name or "audio"
        return f"🎵 {track}{_length(item.duration)}"
    words = {"video": "video", "video_note": "round video", "animation": "GIF", "voice": "🎤 voice message",
             "sticker": f"sticker {item.emoji or ''}".strip(), "document": f"📄 {item.name or 'document'}"}  # fmt: skip
    label = words.get(item.kind, item.kind) + ("" if item.kind in ("sticker", "document") else _length(item.duration))
    return label + (" · under a spoiler" if item.spoiler else "")


def _media_element(item: PreviewMedia, src: str, size: str) -> str:
    if item.kind == "photo":
        return (
            f'<a href="{src}" target="_blank" rel="noopener"><img class="tg-photo" src="{src}" alt="photo"{size}></a>'
        )
    if item.kind == "video":
        return f'<video class="tg-photo" src="{src}" controls preload="metadata"{size}></video>'
    if item.kind == "video_note":
        return f'<video class="tg-round" src="{src}" controls preload="metadata"></video>'
    if item.kind == "animation":
        return f'<video class="tg-photo tg-gif" src="{src}" autoplay loop muted playsinline{size}></video>'
    if item.kind in ("audio", "voice"):
        return f'<audio class="tg-audio" src="{src}" controls preload="none"></audio>'
    if item.kind == "sticker" and item.mime != "application/x-tgsticker":  # an animated .tgs one: not shown here
        if (item.mime or "").startswith("video/"):
            return f'<video class="tg-sticker" src="{src}" autoplay loop muted playsinline></video>'
        return f'<img class="tg-sticker" src="{src}" alt="">'
    return ""


def single_media(item: PreviewMedia) -> str:
    """One media as Telegram shows it, with what it is sent as in words below it (not for a plain photo)."""
    size = f' width="{item.width}" height="{item.height}"' if item.width and item.height else ""
    src = _esc(item.src)
    element = _media_element(item, src, size)
    if item.kind == "document" or not element:
        element = f'<a class="tg-document" href="{src}" target="_blank" rel="noopener">{_esc(media_label(item))}</a>'
    elif item.kind != "photo" or item.spoiler:
        element += f'<div class="tg-media-kind">{_esc(media_label(item))}</div>'
    if item.spoiler:  # blurred until clicked, as Telegram shows a media spoiler
        hint = "media spoiler: click to show"
        element = f'<div class="tg-spoiler tg-media-spoiler" tabindex="0" title="{hint}">{element}</div>'
    return f'<div class="tg-single" data-kind="{_esc(item.kind)}">{element}</div>'


# -- text -------------------------------------------------------------------------------------------------


def _open(name: str, run_tag: Tag) -> str:
    attr = run_tag.attr
    if name in ("b", "strong"):
        return "<b>"
    if name in ("i", "em"):
        return "<i>"
    if name in ("u", "ins"):
        return "<u>"
    if name in ("s", "strike", "del"):
        return "<s>"
    if name in ("span", "tg-spoiler"):
        return '<span class="tg-spoiler" tabindex="0" title="spoiler: click to show">'
    if name == "a":
        href = safe_href(attr("href"))
        if href is None:
            return '<span class="tg-link">'
        return f'<a class="tg-link" href="{_esc(href)}" target="_blank" rel="noopener noreferrer nofollow">'
    if name == "code":
        return "<code>"
    if name == "pre":
        return '<pre class="tg-pre">'
    if name == "blockquote":
        expandable = any(k == "expandable" for k, _ in run_tag.attrs)
        return '<blockquote class="tg-quote' + (' tg-expandable"' if expandable else '"') + ">"
    if name == "tg-emoji":
        emoji_id = attr("emoji-id") or ""
        return f'<span class="tg-emoji" data-emoji-id="{_esc(emoji_id)}" title="custom emoji {_esc(emoji_id)}">'
    return "<span>"


def _close(name: str, run_tag: Tag) -> str:
    if name in ("b", "strong"):
        return "</b>"
    if name in ("i", "em"):
        return "</i>"
    if name in ("u", "ins"):
        return "</u>"
    if name in ("s", "strike", "del"):
        return "</s>"
    if name == "a":
        return "</a>" if safe_href(run_tag.href) else "</span>"
    if name == "code":
        return "</code>"
    if name == "pre":
        return "</pre>"
    if name == "blockquote":
        return "</blockquote>"
    return "</span>"


def _entities(text: str) -> str:
    """Plain text with Telegram's automatic entities: bare links, #hashtags, @mentions, $cashtags."""
    spans: list[tuple[int, int, str]] = []
    for start, end, url in find_urls(text):
        href = safe_href(url if re.match(r"(?i)^[a-z][a-z0-9+.-]*:", url) else f"https://{url}")
        if href:
            spans.append(
                (start, end, f'<a class="tg-link" href="{_esc(href)}" target="_blank" rel="noopener noreferrer'
                 f' nofollow">{_esc(text[start:end])}</a>')
            )  # fmt: skip
    for match in _ENTITY.finditer(text):
        if any(s < match.end() and match.start() < e for s, e, _ in spans):
            continue
        word = match.group(0)
        if word[0] == "@":
            markup = (
                f'<a class="tg-mention" href="https://t.me/{_esc(word[1:])}" target="_blank"'
                f' rel="noopener noreferrer">{_esc(word)}</a>'
            )
        else:
            markup = f'<span class="{"tg-hashtag" if word[0] == "#" else "tg-cashtag"}">{_esc(word)}</span>'
        spans.append((match.start(), match.end(), markup))
    out, position = [], 0
    for start, end, markup in sorted(spans):
        out.append(_esc(text[position:start]))
        out.append(markup)
        position = end
    out.append(_esc(text[position:]))
    return "".join(out)


def text_html(telegram_html: str) -> str:
    """Telegram HTML as display HTML (see the module doc); nesting resolved as Telegram resolves entities."""

    def text(run: Run) -> str:
        plain = run.has("a", "code", "pre", "tg-emoji")
        return _esc(run.text) if plain else _entities(run.text)

    return render_runs(
        parse_html(telegram_html or "").runs,
        open_tag=lambda tag: _open(tag.name, tag),
        close_tag=lambda tag: _close(tag.name, tag),
        text=text,
    )


# -- bubbles ----------------------------------------------------------------------------------------------


def bubble(part: PreviewPart, *, channel: str, time_label: str, number: int, of: int) -> str:
    media = ""
    if len(part.media) == 1:
        media = f'<div class="tg-media">{single_media(part.media[0])}</div>'
    elif part.media:
        media = f'<div class="tg-media">{album_svg(part.media)}</div>'
    text = f'<div class="tg-text">{text_html(part.html)}</div>' if part.html.strip() else ""
    counter = f'<span class="tg-part">{number}/{of}</span> ' if of > 1 else ""
    classes = "tg-bubble" + (" tg-has-media" if media else "") + (" tg-media-only" if media and not text else "")
    return (
        f'<div class="tg-message" data-part="{number}"><div class="{classes}">'
        f'<div class="tg-channel">{_esc(channel)}</div>{media}{text}'
        f'<div class="tg-meta">{counter}<time>{_esc(time_label)}</time></div></div></div>'
    )


def render_preview(parts: list[PreviewPart], *, channel: str, time_label: str) -> str:
    """The post as the messages it will be, one bubble each, in a chat column."""
    bubbles = [
        bubble(part, channel=channel, time_label=time_label, number=n, of=len(parts)) for n, part in enumerate(parts, 1)
    ]
    return '<div class="tg-chat">' + "".join(bubbles) + "</div>"


@cache
def asset(name: str) -> str:
    """preview.css / preview.js, shipped in contentq/data (the outbox inlines them, the web serves them)."""
    return resources.files("contentq").joinpath("data", name).read_text(encoding="utf-8")
