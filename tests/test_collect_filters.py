"""Route filters: each rule puts a post in state `filtered` with the rule that matched."""

from __future__ import annotations

import pytest

from contentq.content.filters import PostFacts, RouteFilter, advertisement
from contentq.integrations.telegram.gateway import MediaInfo
from contentq.routes import Filters
from tests.collect_helpers import collect, posts
from tests.fake_telegram import FakeTelegram

FILTERED_ROUTES = """
[routes.news]
target = "@mine"
sources = ["@donor_a"]
rewriter = "none"

[routes.news.filters]
stop_words = ["casino", "free money"]
regexes = ["(?i)promo\\\\s*code"]
min_length = 10
max_length = 200
media_types = ["text", "photo", "album"]
skip_forwards = true
skip_ads = true
"""


@pytest.fixture
def tg(rt) -> FakeTelegram:
    (rt.settings.home / "contentq.toml").write_text(FILTERED_ROUTES)
    fake = FakeTelegram()
    rt.services["telegram"] = fake
    return fake


def test_each_filter_rule_is_recorded_as_the_reason(rt, tg):
    cases = [
        ("The best <b>Casino</b> in town opens today", {}, "stop_words: 'casino'"),
        ("Get FREE MONEY now, limited offer today", {}, "stop_words: 'free money'"),
        ("Use PROMO  CODE x42 at checkout today", {}, "regexes: '(?i)promo\\s*code'"),
        ("Too short", {}, "min_length: 9 < 10 characters"),
        ("word " * 60, {}, "max_length: 299 > 200 characters"),
        ("A video we cannot repost today", {"media": MediaInfo("video", "video/mp4")},
         "media_types: video is not one of text, photo, album"),
        ("Forwarded from somewhere else", {"is_forward": True}, "skip_forwards: forwarded post"),
        ("Great channel, subscribe to @other_channel now", {}, "skip_ads: advertises @other_channel"),
        ("Join us: https://t.me/+AbCdEf123 for more", {}, "skip_ads: invite link https://t.me/+AbCdEf123"),
        ("Partner post about a course #реклама erid", {}, "skip_ads: ad marker '#реклама'"),
    ]  # fmt: skip
    for msg_id, (html, extra, _) in enumerate(cases, start=1):
        tg.add_message("@donor_a", msg_id, html, **extra)
    tg.add_message("@donor_a", 100, "A normal news post, subscribe to @donor_a for more")
    job = collect(rt)
    stored = posts(rt)
    assert [(p["state"], p["state_reason"]) for p in stored[:-1]] == [("filtered", c[2]) for c in cases]
    assert stored[-1]["state"] == "collected" and stored[-1]["state_reason"] is None
    assert f'"filtered": {len(cases)}' in job["result"]
    # Filtered posts are not rewritten.
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'rewrite'") == 1


def test_filtered_posts_still_make_their_copies_duplicates(rt, tg):
    tg.add_message("@donor_a", 1, "The best casino in town opens today")
    collect(rt)
    tg.add_message("@donor_a", 2, "The best casino in town opens today!")
    collect(rt)
    first, second = posts(rt)
    assert first["state"] == "filtered"
    assert second["state"] == "duplicate" and second["duplicate_of"] == first["id"]


def test_no_filters_means_everything_passes():
    check = RouteFilter.for_route(Filters()).check
    assert check(PostFacts("", "sticker", is_forward=True, source="@a")) is None


def test_stop_words_match_whole_words_only():
    check = RouteFilter.for_route(Filters(stop_words=["ad"])).check
    assert check(PostFacts("A road trip", "text")) is None
    assert check(PostFacts("This is an ad.", "text")) == "stop_words: 'ad'"


def test_ads_are_other_channels_not_the_donor_or_our_own():
    facts = PostFacts("Subscribe to @mine and visit t.me/donor_a", "text", links=("https://t.me/donor_a",),
                      source="@donor_a")  # fmt: skip
    assert advertisement(facts, frozenset({"@mine"})) is None
    linked = PostFacts("Подписывайтесь на канал", "text", links=("https://t.me/rival_news",), source="@donor_a")
    assert advertisement(linked) == "advertises @rival_news"
    mention_only = PostFacts("Thanks to @rival_news for the photo", "text", source="@donor_a")
    assert advertisement(mention_only) is None  # a mention without a call to subscribe is a credit, not an ad
