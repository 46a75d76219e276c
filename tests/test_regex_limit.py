"""Route regexes run with a time limit: catastrophic backtracking on a donor text is reported, never hung on."""

from __future__ import annotations

import pytest

from contentq.content.filters import PostFacts, RouteFilter
from contentq.routes import Filters
from tests.collect_helpers import collect, posts
from tests.fake_telegram import FakeTelegram

EVIL = "a" * 34 + "!"  # 35 characters

ROUTES = """
[routes.news]
target = "@mine"
sources = ["@donor_a"]
rewriter = "none"

[routes.news.filters]
regexes = ["(a|aa)+$", "(?i)promo"]
min_length = 5
"""


def test_the_classic_35_character_case_finishes():
    # `(a+)+$` against 34 a's and a '!' takes minutes with Python's `re` (2^34 paths); the `regex` engine
    # used for route filters answers at once.
    route_filter = RouteFilter(Filters(regexes=["(a+)+$"]))
    assert route_filter.check(PostFacts(EVIL, "text")) is None
    assert route_filter.timed_out == []


def test_a_regex_that_gives_up_keeps_the_post_and_names_the_pattern():
    route_filter = RouteFilter(Filters(regexes=["(a|aa)+$", "(?i)promo"], min_length=50))
    # It does not stop the other rules: the next regex and min_length still apply.
    assert route_filter.check(PostFacts(EVIL + " PROMO", "text")) == "regexes: '(?i)promo'"
    assert route_filter.timed_out == ["(a|aa)+$"]
    assert route_filter.check(PostFacts(EVIL, "text")) == "min_length: 35 < 50 characters"
    assert route_filter.check(PostFacts("a normal post", "text")) == "min_length: 13 < 50 characters"
    assert route_filter.timed_out == []  # per post


@pytest.fixture
def tg(rt) -> FakeTelegram:
    (rt.settings.home / "contentq.toml").write_text(ROUTES)
    fake = FakeTelegram()
    rt.services["telegram"] = fake
    return fake


def test_collect_keeps_the_post_with_a_warning_on_the_post_and_job_and_alerts(rt, tg):
    tg.add_message("@donor_a", 1, EVIL)
    tg.add_message("@donor_a", 2, "Use promo code x42")
    tg.add_message("@donor_a", 3, "An ordinary post about frobnicators")
    job = collect(rt)
    assert job["status"] == "succeeded"
    stored = {p["source_msg_id"]: p for p in posts(rt)}
    kept = stored[1]
    assert kept["state"] == "collected" and kept["state_reason"].startswith("kept: route regex '(a|aa)+$' gave up")
    events = rt.store.query("SELECT * FROM job_events WHERE job_id = ? AND event = 'filter_timeout'", (job["id"],))
    assert len(events) == 1 and "route regex '(a|aa)+$' gave up" in events[0]["message"]
    assert events[0]["level"] == "warning"
    alerts = rt.store.query("SELECT key, message FROM notifications")
    assert [a["key"] for a in alerts] == ["regex-timeout:news"] and "simplify the pattern" in alerts[0]["message"]
    assert stored[2]["state"] == "filtered" and stored[2]["state_reason"] == "regexes: '(?i)promo'"
    assert stored[3]["state_reason"] is None or "gave up" not in stored[3]["state_reason"]
