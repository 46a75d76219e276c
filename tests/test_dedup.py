"""Dedup across channels: exact (source, message id), content (text + media), near (MinHash LSH)."""

from __future__ import annotations

import pytest

from contentq.content.dedup import DedupIndex, content_hash, normalize_text, numbers_agree, numbers_of
from contentq.intake.ingest import forget_dedup_index
from contentq.integrations.telegram.gateway import MediaInfo
from contentq.store import Store
from tests.collect_helpers import ROUTES, channel, collect, posts
from tests.fake_telegram import FakeTelegram

NEWS = (
    "The city council approved the new budget on Tuesday, allocating twelve million euros to public "
    "transport, three new schools and the renovation of the central library before the winter."
)
EDITED = (
    "The city council approved the new budget on Tuesday, allocating twelve million euros to public "
    "transport, three new schools and the renovation of the old central library before winter. Subscribe!"
)
OTHER = (
    "A local football club won the regional championship after a dramatic penalty shootout that kept "
    "thousands of fans in the stadium long after midnight on Saturday."
)


@pytest.fixture
def tg(rt) -> FakeTelegram:
    (rt.settings.home / "contentq.toml").write_text(ROUTES)
    fake = FakeTelegram()
    rt.services["telegram"] = fake
    return fake


def by_source(rt, source):
    return posts(rt, source)


def test_exact_duplicate_same_source_and_message_is_not_stored_twice(rt, tg):
    tg.add_message("@donor_a", 1, "one")
    tg.add_message("@donor_a", 2, "two")
    collect(rt)
    rt.store.execute("UPDATE channels SET last_message_id = 0")  # a reset cursor refetches both
    job = collect(rt)
    assert len(posts(rt)) == 2
    assert '"duplicate": 2' in job["result"]
    assert channel(rt)["duplicate_count"] == 2


def test_same_text_and_media_from_another_channel_is_a_content_duplicate(rt, tg):
    tg.add_message("@donor_a", 5, "Breaking: <b>storm</b> warning", media=MediaInfo("photo"), data=b"same photo")
    collect(rt, "@donor_a")
    tg.add_message("@donor_b", 9, "BREAKING — storm warning! https://t.me/donor_b", media=MediaInfo("photo"),
                   data=b"same photo")  # fmt: skip
    job = collect(rt, "@donor_b")
    (original,) = by_source(rt, "@donor_a")
    (copy,) = by_source(rt, "@donor_b")
    assert copy["state"] == "duplicate"
    assert copy["duplicate_of"] == original["id"]
    assert copy["state_reason"] == f"same content as post {original['id']}"
    assert copy["content_hash"] == original["content_hash"]
    assert '"duplicate": 1' in job["result"] and '"collected": 0' in job["result"]
    # A duplicate is recorded, not dropped, and no rewrite job is enqueued for it.
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'rewrite'") == 1


def test_same_text_with_other_media_is_not_a_content_duplicate(rt, tg):
    tg.add_message("@donor_a", 1, "Photo of the day", media=MediaInfo("photo"), data=b"sunset")
    tg.add_message("@donor_b", 1, "Photo of the day", media=MediaInfo("photo"), data=b"mountains")
    collect(rt, "@donor_a")
    collect(rt, "@donor_b")
    assert [p["state"] for p in posts(rt)] == ["collected", "collected"]


def test_lightly_edited_news_from_another_channel_is_a_near_duplicate(rt, tg):
    tg.add_message("@donor_a", 1, NEWS)
    collect(rt, "@donor_a")
    tg.add_message("@donor_b", 1, EDITED)
    tg.add_message("@donor_b", 2, OTHER)
    collect(rt, "@donor_b")
    (original,) = by_source(rt, "@donor_a")
    near, other = by_source(rt, "@donor_b")
    assert near["state"] == "duplicate" and near["duplicate_of"] == original["id"]
    assert near["state_reason"].startswith(f"near duplicate of post {original['id']} (similarity 0.")
    assert other["state"] == "collected"


def test_near_duplicates_count_across_channels_only(rt, tg):
    tg.add_message("@donor_a", 1, NEWS)
    tg.add_message("@donor_a", 2, EDITED)  # a channel's own follow-up looks alike but is its own post
    collect(rt, "@donor_a")
    assert [p["state"] for p in posts(rt)] == ["collected", "collected"]


def test_rejected_and_filtered_posts_stay_in_dedup_memory(rt, tg):
    tg.add_message("@donor_a", 1, NEWS)
    collect(rt, "@donor_a")
    (original,) = by_source(rt, "@donor_a")
    rt.store.execute("UPDATE posts SET state = 'rejected' WHERE id = ?", (original["id"],))
    forget_dedup_index(rt)  # a fresh process: the index is loaded from SQLite
    tg.add_message("@donor_b", 1, NEWS)
    collect(rt, "@donor_b")
    (copy,) = by_source(rt, "@donor_b")
    assert copy["state"] == "duplicate" and copy["duplicate_of"] == original["id"]


def test_duplicates_point_to_the_original_not_to_another_duplicate(rt, tg):
    tg.add_message("@donor_a", 1, NEWS)
    collect(rt, "@donor_a")
    tg.add_message("@donor_b", 1, EDITED)
    tg.add_message("@donor_b", 2, EDITED)  # the same edited copy again, exact content
    collect(rt, "@donor_b")
    (original,) = by_source(rt, "@donor_a")
    assert [p["duplicate_of"] for p in by_source(rt, "@donor_b")] == [original["id"], original["id"]]


def test_a_new_process_finds_a_near_duplicate_stored_by_another_without_loading_anything(rt, tg):
    tg.add_message("@donor_a", 1, NEWS)
    collect(rt, "@donor_a")
    other = Store(rt.store.path)  # another process: its own connection, its own index
    try:
        index = DedupIndex(rt.settings.near_duplicate_threshold, rt.settings.dedup_window_days)
        assert index.refresh(other.conn) == 0  # the bands are in SQLite already: nothing to load or build
        fp = index.fingerprint(normalize_text(EDITED))
        match = index.match(other.conn, fp, "@donor_b")
        (original,) = by_source(rt, "@donor_a")
        assert match is not None and match.how == "near" and match.post_id == original["id"]
        assert match.similarity >= 0.8
        assert index.match(other.conn, fp, "@donor_a") is None  # same channel: not a near duplicate
        assert index.match(other.conn, index.fingerprint(normalize_text(OTHER)), "@donor_b") is None
    finally:
        other.close()


def test_another_threshold_rebuilds_the_bands_from_the_stored_signatures(rt, tg):
    tg.add_message("@donor_a", 1, NEWS)
    tg.add_message("@donor_a", 2, OTHER)
    collect(rt, "@donor_a")
    index = DedupIndex(0.8)  # other bands than the default 0.65's
    assert index.refresh(rt.store.conn) == 2
    assert rt.store.scalar("SELECT value FROM dedup_state WHERE name = 'bands'") == index.layout
    match = index.match(rt.store.conn, index.fingerprint(normalize_text(EDITED)), "@donor_b")
    assert match is not None and match.how == "near"


def test_dedup_window_forgets_old_posts_and_prune_deletes_their_bands(rt, tg):
    tg.add_message("@donor_a", 1, NEWS)
    tg.add_message("@donor_a", 2, OTHER)
    collect(rt, "@donor_a")
    assert rt.store.scalar("SELECT COUNT(*) FROM dedup_bands") > 0
    rt.store.execute("UPDATE posts SET collected_at = '2000-01-01T00:00:00.000+00:00'")
    index = DedupIndex(rt.settings.near_duplicate_threshold, window_days=30)
    assert index.match(rt.store.conn, index.fingerprint(normalize_text(NEWS)), "@donor_b") is None
    with rt.store.transaction() as conn:
        assert index.prune(conn) > 0
    assert rt.store.scalar("SELECT COUNT(*) FROM dedup_bands") == 0
    # What is still inside the window keeps its bands.
    tg.add_message("@donor_a", 3, NEWS + " Update.")
    collect(rt, "@donor_a")
    with rt.store.transaction() as conn:
        assert index.prune(conn) == 0
    assert rt.store.scalar("SELECT COUNT(*) FROM dedup_bands") == index.bands


def test_normalisation_ignores_case_punctuation_links_and_mentions():
    a = normalize_text("Hello, WORLD! Read more: https://example.com/x @donor")
    b = normalize_text("hello world — read more t.me/other")
    assert a == b == "hello world read more"
    assert content_hash(a) == content_hash(b)
    assert content_hash(a, ["m1", "m2"]) == content_hash(a, ["m2", "m1"])
    assert content_hash(a, ["m1"]) != content_hash(a)
    assert content_hash("") is None


RATES = (
    "Официальные курсы валют Центробанка России на {d} июня: доллар США {a} рубля, евро {b} рубля, юань {c}"
    " рубля. Курсы действуют до следующего рабочего дня"
)


def test_posts_of_one_fixed_form_with_other_numbers_are_not_near_duplicates(rt, tg):
    """Such posts are ~0.72 alike, over the 0.65 default: below 0.8 a near match must share its numbers."""
    tg.add_message("@donor_a", 1, RATES.format(d=3, a="89,45", b="97,12", c="12,31"))
    tg.add_message(
        "@donor_a",
        2,
        "Cloudflare запустила бесплатную защиту от ботов, которые собирают данные для "
        "обучения нейросетей: владельцу сайта достаточно включить один переключатель в панели управления.",
    )
    collect(rt, "@donor_a")
    tg.add_message("@donor_b", 1, RATES.format(d=4, a="90,02", b="97,80", c="12,40"))  # other day, other news
    tg.add_message(
        "@donor_b",
        2,
        "Cloudflare выпустила бесплатную защиту от ботов, которые собирают данные для "
        "обучения ИИ-моделей: владельцу сайта нужно включить один переключатель в панели управления.",
    )
    collect(rt, "@donor_b")
    rates, reworded = by_source(rt, "@donor_b")
    assert rates["state"] == "collected"
    assert reworded["state"] == "duplicate" and 0.65 <= reworded["similarity"] < 0.8
    # A new process reads the numbers back from SQLite.
    index = DedupIndex(rt.settings.near_duplicate_threshold)
    conn = rt.store.conn
    assert index.match(conn, index.fingerprint(normalize_text(RATES.format(d=5, a="91,10", b="98,00", c="12,55"))),
                       "@x") is None  # fmt: skip
    assert index.match(
        conn,
        index.fingerprint(normalize_text(RATES.format(d=3, a="89,45", b="97,12", c="12,31") + " Источник: ЦБ.")),
        "@x",
    )


def test_purge_deletes_the_bands_of_posts_that_left_the_window(rt, tg):
    from contentq.ops.purge import purge

    tg.add_message("@donor_a", 1, NEWS)
    collect(rt, "@donor_a")
    rows = rt.store.scalar("SELECT COUNT(*) FROM dedup_bands")
    assert rows > 0
    assert purge(rt, dry_run=True).removed["dedup band rows"] == 0  # inside the window: kept
    rt.store.execute("UPDATE posts SET collected_at = '2000-01-01T00:00:00.000+00:00'")
    assert purge(rt, dry_run=True).removed["dedup band rows"] == rows
    assert rt.store.scalar("SELECT COUNT(*) FROM dedup_bands") == rows  # a dry run deletes nothing
    assert purge(rt).removed["dedup band rows"] == rows
    assert rt.store.scalar("SELECT COUNT(*) FROM dedup_bands") == 0


def test_rates_that_share_only_whole_parts_are_not_the_same_numbers():
    """'90,71' and '90,56' are two numbers, not '90' twice: rates of a day that share only their whole parts are
    other news (bench/ingest.py's one false positive was such a pair, at similarity 0.71)."""
    a = "Курс доллара 90,71, евро 78,83"
    b = "Курс доллара 90,56, евро 78,91"
    assert numbers_of(a) == ("78.83", "90.71")
    assert not numbers_agree(numbers_of(a), numbers_of(b))
    assert numbers_agree(numbers_of(a), numbers_of("Доллар стоит 90.71, евро — 78.83"))  # the same, written otherwise


def test_posts_that_differ_only_in_their_link_are_different_posts(rt, tg):
    # Issue 29: the second episode was dropped as "same content as" the first.
    tg.add_message("@donor_a", 1, "Новый выпуск подкаста: https://pod.example/ep1")
    tg.add_message("@donor_a", 2, "Новый выпуск подкаста: https://pod.example/ep2")
    tg.add_message("@donor_a", 3, 'Новый выпуск подкаста: <a href="https://pod.example/ep3">слушать</a>')
    tg.add_message("@donor_a", 4, 'Новый выпуск подкаста: <a href="https://pod.example/ep4">слушать</a>')
    collect(rt, "@donor_a")
    assert [p["state"] for p in posts(rt)] == ["collected"] * 4
    # The same link again is the same post, whatever its tracking parameters and wherever it comes from.
    tg.add_message("@donor_b", 1, "Новый выпуск подкаста: https://pod.example/ep1?utm_source=tg&utm_medium=post")
    collect(rt, "@donor_b")
    (copy,) = by_source(rt, "@donor_b")
    assert copy["state"] == "duplicate" and copy["duplicate_of"] == posts(rt)[0]["id"]


def test_a_near_copy_around_another_link_is_not_a_near_duplicate(rt, tg):
    tg.add_message("@donor_a", 1, NEWS + " Подробнее: https://city.example/budget-2024")
    collect(rt, "@donor_a")
    tg.add_message("@donor_b", 1, EDITED + " Подробнее: https://city.example/budget-2025")  # another story
    tg.add_message("@donor_b", 2, EDITED + " Подробнее: https://city.example/budget-2024/")  # the same one
    tg.add_message("@donor_b", 3, EDITED)  # a copy without the link
    collect(rt, "@donor_b")
    original = by_source(rt, "@donor_a")[0]["id"]
    assert [(p["state"], p["duplicate_of"]) for p in by_source(rt, "@donor_b")] == [
        ("collected", None), ("duplicate", original), ("duplicate", original)
    ]  # fmt: skip


def test_content_links_ignore_tracking_and_telegram_links():
    from contentq.content.dedup import content_links, links_agree

    assert content_links(["https://www.Pod.example/ep1/?utm_source=x&id=7&fbclid=y", "https://t.me/donor",
                          "t.me/+invite", "pod.example/ep1?id=7"]) == ("pod.example/ep1?id=7",)  # fmt: skip
    assert links_agree(("a.example/1",), ()) and links_agree((), ("b.example",))
    assert not links_agree(("a.example/1",), ("a.example/2",))
    assert content_hash("same words", links=("a.example/1",)) != content_hash("same words", links=("a.example/2",))
    assert content_hash("same words") == content_hash("same words", links=())  # stored hashes stay valid
