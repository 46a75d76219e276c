"""`card`: a branded image rendered locally with Pillow, for operators who want no AI images.

The card is the post's title (or its first sentence) in large type on the brand background, with an accent
stripe on the left edge and an optional logo in the bottom-right corner. Long titles are wrapped to the
width between the margins; when they still do not fit, the type shrinks (down to MIN_FONT_PX) and, as a
last resort, the text is cut with an ellipsis. The bundled font (DejaVu Sans Bold) covers Latin, Cyrillic
and Greek; characters the font has no glyph for (emoji, mostly) are left out instead of drawn as boxes.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from functools import cached_property
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFont

from contentq.errors import ConfigError
from contentq.integrations.image_generator import GeneratedImage, ImageFatalError
from contentq.settings import Settings

MARGIN_RATIO = 0.07
"""Blank border on every side, as a share of the card's shorter side: no text pixel is drawn in it."""

ACCENT_RATIO = 0.012
"""Width of the accent stripe on the left edge, as a share of the card's width (inside the margin)."""

LOGO_RATIO = 0.14
"""Largest logo height, as a share of the card's height."""

START_FONT_RATIO = 0.11
"""First font size tried, as a share of the card's height; smaller sizes are tried until the text fits."""

MIN_FONT_PX = 14
"""Smallest font size; text that does not fit at this size is cut with an ellipsis."""

LINE_SPACING = 1.22
"""Baseline-to-baseline distance in ems."""

MAX_CARD_CHARS = 280
"""Longest text put on a card; a first sentence longer than this is cut."""

DEFAULT_FONT = "DejaVuSans-Bold.ttf"

ELLIPSIS = "…"


def bundled_font_path() -> Path:
    return Path(str(resources.files("contentq") / "data" / "fonts" / DEFAULT_FONT))


# -- the text of a card -------------------------------------------------------------------------


class _TextOnly(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of Telegram HTML: tags dropped, entities decoded, line breaks kept."""
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    return html.unescape("".join(parser.parts))


_SENTENCE = re.compile(r"(.+?[.!?…]+[\"'»”’)\]]*)(?=\s|$)", re.S)


def first_sentence(text: str) -> str:
    """The first sentence of the first non-empty line (a post's opening line is usually its headline)."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    match = _SENTENCE.match(line)
    sentence = (match.group(1) if match else line).strip()
    return shorten(sentence)


def shorten(text: str, limit: int = MAX_CARD_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] or text[: limit - 1]
    return cut.rstrip(" ,;:-—") + ELLIPSIS


def card_text_for_post(post: dict[str, Any]) -> str:
    """What a card says: the post's title, else the first sentence of its rewrite (or of the donor text)."""
    title = " ".join(html_to_text(post.get("title") or "").split())
    if title:
        return shorten(title)
    for column in ("rewrite_html", "text_html"):
        text = first_sentence(html_to_text(post.get(column) or ""))
        if text:
            return text
    return ""


# -- style ----------------------------------------------------------------------------------------


def _colour(value: str, setting: str) -> tuple[int, int, int]:
    try:
        rgb = ImageColor.getrgb(value)
    except ValueError:
        raise ConfigError(
            f"CONTENTQ_{setting.upper()}: {value!r} is not a colour; use #rrggbb or a CSS colour name"
        ) from None
    return (rgb[0], rgb[1], rgb[2])


@dataclass(frozen=True)
class CardStyle:
    width: int = 1280
    height: int = 720
    background: str = "#1e293b"
    foreground: str = "#f8fafc"
    accent: str = "#38bdf8"
    font: Path | None = None
    logo: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CardStyle:
        return cls(
            width=settings.card_width,
            height=settings.card_height,
            background=settings.card_background,
            foreground=settings.card_foreground,
            accent=settings.card_accent,
            font=settings.card_font,
            logo=settings.card_logo,
        )

    @property
    def margin(self) -> int:
        return max(8, round(min(self.width, self.height) * MARGIN_RATIO))

    @property
    def accent_width(self) -> int:
        return max(4, round(self.width * ACCENT_RATIO))


@dataclass(frozen=True)
class CardLayout:
    font_size: int
    lines: tuple[str, ...]
    text_box: tuple[int, int, int, int]  # where the text may be drawn: left, top, right, bottom
    cut: bool  # the text did not fit even at MIN_FONT_PX and was cut


class CardRenderer:
    """The `card` backend: an ImageGenerator that needs no network."""

    name = "card"

    def __init__(self, style: CardStyle) -> None:
        if not (64 <= style.width <= 4096 and 64 <= style.height <= 4096):
            raise ConfigError(
                f"CONTENTQ_CARD_WIDTH/CONTENTQ_CARD_HEIGHT: {style.width}x{style.height} is not a usable card "
                "size; use 64 to 4096 pixels a side (Telegram shows 1280x720 well)"
            )
        self.style = style
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self.background = _colour(style.background, "card_background")
        self.foreground = _colour(style.foreground, "card_foreground")
        self.accent = _colour(style.accent, "card_accent")
        self.font_path = self._font_path()
        self.logo = self._load_logo()
        ImageFont.truetype(str(self.font_path), 20)  # fail now, not on the first card

    @classmethod
    def from_settings(cls, settings: Settings) -> CardRenderer:
        return cls(CardStyle.from_settings(settings))

    def _font_path(self) -> Path:
        path = self.style.font
        if path is None:
            return bundled_font_path()
        path = path.expanduser()
        if not path.is_file():
            raise ConfigError(f"CONTENTQ_CARD_FONT: no font file at {path}; give a .ttf/.otf path or unset it")
        try:
            ImageFont.truetype(str(path), 20)
        except OSError as exc:
            raise ConfigError(f"CONTENTQ_CARD_FONT: {path} is not a font Pillow can read ({exc})") from None
        return path

    def _load_logo(self) -> Image.Image | None:
        path = self.style.logo
        if path is None:
            return None
        path = path.expanduser()
        if not path.is_file():
            raise ConfigError(f"CONTENTQ_CARD_LOGO: no image at {path}; give a PNG (transparent works best)")
        try:
            with Image.open(path) as img:
                logo = img.convert("RGBA")
        except OSError as exc:
            raise ConfigError(f"CONTENTQ_CARD_LOGO: {path} is not an image Pillow can read ({exc})") from None
        box_h = max(1, round(self.style.height * LOGO_RATIO))
        box_w = max(1, round(self.style.width * 0.3))
        logo.thumbnail((box_w, box_h), Image.Resampling.LANCZOS)
        return logo

    # -- fonts -------------------------------------------------------------------------------

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        cached = self._fonts.get(size)
        if cached is None:
            cached = self._fonts[size] = ImageFont.truetype(str(self.font_path), size)
        return cached

    @cached_property
    def _missing_glyph(self) -> tuple[tuple[int, int], bytes]:
        mask = self.font(32).getmask("\U0010fffd")  # a private-use code point: no font draws it
        return mask.size, bytes(mask)

    def drawable(self, text: str) -> str:
        """`text` without the characters the font has no glyph for (they would show as boxes)."""
        probe = self.font(32)
        keep: dict[str, bool] = {}
        out = []
        for ch in text:
            if ch not in keep:
                if ch.isspace():
                    keep[ch] = True
                else:
                    mask = probe.getmask(ch)
                    keep[ch] = (mask.size, bytes(mask)) != self._missing_glyph
            if keep[ch]:
                out.append(ch)
        return " ".join("".join(out).split())

    # -- layout ------------------------------------------------------------------------------

    def text_box(self) -> tuple[int, int, int, int]:
        s = self.style
        m = s.margin
        left = max(m, s.accent_width + m // 2)
        bottom = s.height - m
        if self.logo is not None:
            bottom -= self.logo.height + m // 2
        return left, m, s.width - m, bottom

    @staticmethod
    def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
        def fits(candidate: str) -> bool:
            x0, _, x1, _ = font.getbbox(candidate, anchor="ls")
            return x1 - min(0, x0) <= width

        lines: list[str] = []
        line = ""
        for word in text.split():
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
                line = ""
            while not fits(word):  # a word wider than the card: break it between characters
                cut = len(word) - 1
                while cut > 1 and not fits(word[:cut]):
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        if line:
            lines.append(line)
        return lines

    @staticmethod
    def _block_height(font: ImageFont.FreeTypeFont, size: int, n_lines: int) -> int:
        ascent, descent = font.getmetrics()
        return round((n_lines - 1) * size * LINE_SPACING) + ascent + descent

    def layout(self, text: str) -> CardLayout:
        left, top, right, bottom = self.text_box()
        width, height = right - left, bottom - top
        size = max(MIN_FONT_PX, round(self.style.height * START_FONT_RATIO))
        while True:
            font = self.font(size)
            lines = self._wrap(text, font, width)
            if self._block_height(font, size, len(lines)) <= height:
                return CardLayout(size, tuple(lines), (left, top, right, bottom), cut=False)
            if size <= MIN_FONT_PX:
                break
            size = max(MIN_FONT_PX, int(size * 0.92))
        # Still too long at the smallest size: keep the lines that fit and end the last with an ellipsis.
        font = self.font(size)
        kept = list(lines)
        while kept and self._block_height(font, size, len(kept)) > height:
            kept.pop()
        if not kept:
            raise ImageFatalError(
                f"a {self.style.width}x{self.style.height} card has no room for one line of text; "
                "make the card larger or the logo smaller"
            )
        last = kept[-1]
        while last and font.getbbox(last + ELLIPSIS, anchor="ls")[2] > width:
            last = last[:-1].rstrip()
        kept[-1] = last + ELLIPSIS
        return CardLayout(size, tuple(kept), (left, top, right, bottom), cut=True)

    # -- rendering ---------------------------------------------------------------------------

    def render(self, text: str) -> tuple[Image.Image, CardLayout]:
        s = self.style
        words = self.drawable(text)
        if not words:
            raise ImageFatalError(
                "there is no text to put on the card (the post has no title or text the font can draw); "
                "give one with `contentq images generate POST_ID --prompt TEXT`"
            )
        layout = self.layout(words)
        image = Image.new("RGB", (s.width, s.height), self.background)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, s.accent_width - 1, s.height - 1), fill=self.accent)
        font = self.font(layout.font_size)
        ascent, _ = font.getmetrics()
        left, top, _, bottom = layout.text_box
        block = self._block_height(font, layout.font_size, len(layout.lines))
        y = top + max(0, (bottom - top - block) // 2) + ascent  # baseline of the first line
        for line in layout.lines:
            bearing = min(0, font.getbbox(line, anchor="ls")[0])  # a glyph that reaches left of its origin
            draw.text((left - bearing, y), line, font=font, fill=self.foreground, anchor="ls")
            y += round(layout.font_size * LINE_SPACING)
        if self.logo is not None:
            x = s.width - s.margin - self.logo.width
            image.paste(self.logo, (x, s.height - s.margin - self.logo.height), self.logo)
        return image, layout

    def generate(self, text: str) -> GeneratedImage:
        image, layout = self.render(text)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return GeneratedImage(
            data=buffer.getvalue(),
            mime="image/png",
            width=image.width,
            height=image.height,
            backend=self.name,
            details={"font_size": layout.font_size, "lines": len(layout.lines), "cut": layout.cut},
        )
