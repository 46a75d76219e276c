"""The card backend: a PNG of the configured size, Cyrillic drawn with real glyphs, long titles wrapped
inside the margins, the font shrinking for very long text, the logo in its corner, clear setup errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from contentq.errors import ConfigError
from contentq.images.card import CardRenderer, CardStyle, card_text_for_post, first_sentence
from contentq.integrations.image_generator import ImageFatalError, verify_raster

STYLE = CardStyle(width=1280, height=720, background="#1e293b", foreground="#f8fafc", accent="#38bdf8")

LONG_RU = (
    "Правительство утвердило новую программу развития региональных аэропортов: до 2030 года "
    "реконструируют сорок две взлётно-посадочные полосы и построят девять новых терминалов"
)


def png(generated) -> Image.Image:  # type: ignore[no-untyped-def]
    image = Image.open(io.BytesIO(generated.data))
    image.load()
    return image


def text_mask(image: Image.Image, colour: str) -> Image.Image:
    """White where a pixel is (close to) the text colour."""
    solid = Image.new("RGB", image.size, colour)
    diff = ImageChops.difference(image.convert("RGB"), solid).convert("L")
    return diff.point(lambda v: 255 if v < 60 else 0)


def text_rows(mask: Image.Image) -> list[tuple[int, int]]:
    """Bands of consecutive pixel rows that hold text: one band per line of text (diacritics such as
    the dots of ё make thin bands of their own, which are left out)."""
    width, height = mask.size
    bands: list[tuple[int, int]] = []
    start = None
    for y in range(height):
        has = mask.crop((0, y, width, y + 1)).getbbox() is not None
        if has and start is None:
            start = y
        if not has and start is not None:
            bands.append((start, y))
            start = None
    if start is not None:
        bands.append((start, height))
    return [(a, b) for a, b in bands if b - a >= 15]


def assert_inside_margins(box: tuple[int, int, int, int], style: CardStyle) -> None:
    left, top, right, bottom = box
    m = style.margin
    assert left >= m and top >= m, f"text at {box} enters the {m}px margin"
    assert right <= style.width - m and bottom <= style.height - m, f"text at {box} enters the {m}px margin"


def test_card_is_a_png_of_the_configured_size():
    generated = CardRenderer(STYLE).generate("Hello, world")
    image = png(generated)
    assert image.format == "PNG" and image.size == (1280, 720)
    assert (generated.width, generated.height, generated.mime) == (1280, 720, "image/png")
    assert verify_raster(generated.data).format == "PNG"
    assert image.getpixel((5, 360)) == (0x38, 0xBD, 0xF8)  # the accent stripe on the left edge
    assert image.getpixel((1270, 10)) == (0x1E, 0x29, 0x3B)  # the background

    other = png(CardRenderer(CardStyle(width=800, height=800)).generate("Square"))
    assert other.size == (800, 800)


def test_cyrillic_is_drawn_with_real_glyphs_not_boxes():
    renderer = CardRenderer(STYLE)
    zhe = png(renderer.generate("ЖЖЖ"))
    pe = png(renderer.generate("ППП"))
    # A font without Cyrillic draws every letter as the same box: the two cards would be identical.
    assert ImageChops.difference(zhe, pe).getbbox() is not None
    assert renderer.drawable("Привет, мир") == "Привет, мир"
    mask = text_mask(png(renderer.generate("Привет, мир")), STYLE.foreground)
    box = mask.getbbox()
    assert box is not None and box[2] - box[0] > 200  # real text, not a sliver
    assert_inside_margins(box, STYLE)


def test_long_cyrillic_title_is_wrapped_to_several_lines_inside_the_margins():
    renderer = CardRenderer(STYLE)
    image, layout = renderer.render(LONG_RU)
    assert len(layout.lines) >= 3 and not layout.cut
    assert " ".join(layout.lines) == " ".join(LONG_RU.split())  # every word, in order, nothing cut
    mask = text_mask(image, STYLE.foreground)
    box = mask.getbbox()
    assert box is not None
    assert_inside_margins(box, STYLE)
    assert len(text_rows(mask)) == len(layout.lines) >= 3  # the pixels show separate lines
    assert box[2] - box[0] > STYLE.width * 0.5  # lines use the width, not one word each


def test_very_long_text_shrinks_the_font_and_still_fits():
    renderer = CardRenderer(STYLE)
    _, short_layout = renderer.render("Коротко")
    image, layout = renderer.render(LONG_RU * 3)
    assert layout.font_size < short_layout.font_size
    box = text_mask(image, STYLE.foreground).getbbox()
    assert box is not None
    assert_inside_margins(box, STYLE)

    # Far more than fits even at the smallest size: cut with an ellipsis, still inside the margins.
    small = CardStyle(width=320, height=180)
    image, layout = CardRenderer(small).render(LONG_RU * 10)
    assert layout.cut and layout.lines[-1].endswith("…")
    box = text_mask(image, small.foreground).getbbox()
    assert box is not None
    assert_inside_margins(box, small)


def test_a_single_overlong_word_is_broken_to_fit():
    image, layout = CardRenderer(STYLE).render("Сверх" + "длинное" * 12)
    assert len(layout.lines) >= 2
    box = text_mask(image, STYLE.foreground).getbbox()
    assert box is not None
    assert_inside_margins(box, STYLE)


def test_emoji_without_glyphs_are_left_out():
    renderer = CardRenderer(STYLE)
    assert renderer.drawable("Запуск 🚀 ракеты") == "Запуск ракеты"
    with pytest.raises(ImageFatalError, match="no text to put on the card"):
        renderer.generate("🚀🔥")


def test_logo_sits_in_the_bottom_right_corner_and_text_stays_clear_of_it(tmp_path: Path):
    logo_path = tmp_path / "logo.png"
    Image.new("RGBA", (200, 100), (255, 0, 0, 255)).save(logo_path)
    style = CardStyle(logo=logo_path)
    renderer = CardRenderer(style)
    image, _ = renderer.render(LONG_RU)
    red = text_mask(image, "#ff0000").getbbox()
    assert red is not None
    assert red[2] == style.width - style.margin and red[3] == style.height - style.margin
    assert red[3] - red[1] <= round(style.height * 0.14)
    text = text_mask(image, style.foreground).getbbox()
    assert text is not None and text[3] <= red[1]
    assert_inside_margins(text, style)


def test_custom_colours_and_font(tmp_path: Path):
    from contentq.images.card import bundled_font_path

    font = tmp_path / "brand.ttf"
    font.write_bytes(bundled_font_path().read_bytes())
    style = CardStyle(background="white", foreground="#000000", accent="red", font=font)
    image = png(CardRenderer(style).generate("Бренд"))
    assert image.getpixel((1270, 10)) == (255, 255, 255)
    assert image.getpixel((2, 2)) == (255, 0, 0)
    assert text_mask(image, "#000000").getbbox() is not None


def test_bad_card_settings_fail_with_the_setting_named(tmp_path: Path):
    with pytest.raises(ConfigError, match="CONTENTQ_CARD_FONT: no font file"):
        CardRenderer(CardStyle(font=tmp_path / "missing.ttf"))
    not_a_font = tmp_path / "font.ttf"
    not_a_font.write_text("nope")
    with pytest.raises(ConfigError, match="CONTENTQ_CARD_FONT: .* is not a font"):
        CardRenderer(CardStyle(font=not_a_font))
    with pytest.raises(ConfigError, match="CONTENTQ_CARD_BACKGROUND: 'blurple' is not a colour"):
        CardRenderer(CardStyle(background="blurple"))
    with pytest.raises(ConfigError, match="CONTENTQ_CARD_LOGO: no image"):
        CardRenderer(CardStyle(logo=tmp_path / "logo.png"))
    with pytest.raises(ConfigError, match="CONTENTQ_CARD_WIDTH"):
        CardRenderer(CardStyle(width=10))


def test_card_text_is_the_title_else_the_first_sentence_without_html():
    assert card_text_for_post({"title": "Заголовок <b>новости</b>"}) == "Заголовок новости"
    post = {"title": None, "rewrite_html": "<b>Цены выросли на 5%.</b> Подробности ниже.", "text_html": "x"}
    assert card_text_for_post(post) == "Цены выросли на 5%."
    donor = {"title": "", "rewrite_html": None, "text_html": "Первая строка без точки<br>Вторая строка."}
    assert card_text_for_post(donor) == "Первая строка без точки"
    assert card_text_for_post({"title": None, "rewrite_html": None, "text_html": ""}) == ""
    assert first_sentence("Что случилось? Всё хорошо.") == "Что случилось?"
    assert first_sentence("Цена &amp; качество. Ещё") == "Цена &amp; качество."  # already-decoded text stays
    assert len(first_sentence("слово " * 200)) <= 280
