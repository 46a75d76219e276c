"""The Telegram preview renderer shared by the outbox's post.html and the web panel."""

from __future__ import annotations

from contentq.content.preview import BUBBLE_UNITS, PreviewMedia, PreviewPart, mosaic, render_preview, text_html


def _album(*sizes: tuple[int, int]) -> list[PreviewMedia]:
    return [PreviewMedia(f"/m/{n}", "photo", w, h) for n, (w, h) in enumerate(sizes)]


def test_five_photos_make_a_two_over_three_mosaic_filling_the_width() -> None:
    tiles, height = mosaic(_album((1200, 800), (800, 1200), (1000, 1000), (1600, 900), (900, 1200)))
    rows: dict[float, list[float]] = {}
    for tile in tiles:
        rows.setdefault(tile.y, []).append(tile.x + tile.width)
    assert [len(r) for r in rows.values()] == [2, 3]  # the busier row at the bottom, as Telegram lays it out
    assert all(abs(max(r) - BUBBLE_UNITS) < 1 for r in rows.values())  # every row fills the bubble
    assert [t.media.src for t in tiles] == [f"/m/{n}" for n in range(5)]  # order kept
    assert 0.6 * BUBBLE_UNITS < height < 1.4 * BUBBLE_UNITS


def test_a_single_photo_is_shown_at_bubble_width_not_as_a_thumbnail() -> None:
    page = render_preview([PreviewPart("hi", [PreviewMedia("/m/1", "photo", 1280, 720)])], channel="@c", time_label="t")
    assert '<img class="tg-photo" src="/m/1" alt="photo" width="1280" height="720">' in page
    assert "tg-album" not in page


def test_text_entities_spoilers_and_hostile_links() -> None:
    html = text_html(
        'Read <a href="javascript:alert(1)">this</a> on example.com, #news by @some_user $BTC '
        '<tg-spoiler>hidden</tg-spoiler> <tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> <b>x<script>y</b>'
    )
    assert "javascript" not in html and "<script" not in html and "Read this on" in html
    assert '<a class="tg-link" href="https://example.com"' in html
    assert '<span class="tg-hashtag">#news</span>' in html and '<span class="tg-cashtag">$BTC</span>' in html
    assert 'href="https://t.me/some_user"' in html
    assert '<span class="tg-spoiler" tabindex="0" title="spoiler: click to show">hidden</span>' in html
    assert 'data-emoji-id="5368324170671202286"' in html and "👍" in html


def test_each_part_is_its_own_bubble_with_channel_and_time() -> None:
    page = render_preview([PreviewPart("one"), PreviewPart("two")], channel="@mychan", time_label="18:30")
    assert page.count('class="tg-message"') == 2 and page.count("@mychan") == 2
    assert "1/2" in page and "2/2" in page and page.count("<time>18:30</time>") == 2
    assert "style=" not in page and "<script" not in page  # fits a strict CSP
