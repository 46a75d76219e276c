"""Insights of X and Instagram deliveries: GET /2/tweets (100 ids a request) and the Graph API's multiple-ID
read (50 a request) on the fake platforms over real HTTP; a deleted tweet or medium, X's 429."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contentq.clock import iso, now
from contentq.errors import Reschedule
from contentq.insights.fetch import fetch_round, new_round
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import get_settings, load_settings
from tests.destination_helpers import IG_ENV, X_ENV, routes_toml
from tests.fake_instagram import FakeInstagram
from tests.fake_x import FakeX
from tests.publish_helpers import add_post, write_config


@pytest.fixture
def world(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    x, ig = FakeX(tmp_path / "x.db"), FakeInstagram(tmp_path / "ig.db")
    x.start()
    ig.start()
    for key, value in {**X_ENV, **IG_ENV}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    write_config(home, routes_toml(["x:main", "instagram:brand"], x_api=x.base_url, ig_api=ig.base_url,
                                   public_url="https://media.example.com"))  # fmt: skip
    rt = Runtime(load_settings(home=home))
    set_process_runtime(rt)
    yield {"rt": rt, "x": x, "ig": ig}
    rt.close()
    x.stop()
    ig.stop()


def delivered(rt: Runtime, destination: str, platform_id: str, hours_ago: float = 30) -> int:
    """A post published to one destination (its delivery as the deliver job records it)."""
    at = iso(now() - timedelta(hours=hours_ago))
    post_id = add_post(rt, route="news", state="published", published_at=at)
    platform, _, account = destination.partition(":")
    with rt.store.transaction() as conn:
        conn.execute(
            "INSERT INTO deliveries (post_id, destination, platform, account, state, platform_ids, link, created_at,"
            " updated_at, published_at) VALUES (?, ?, ?, ?, 'published', ?, ?, ?, ?, ?)",
            (post_id, destination, platform, account, json.dumps([platform_id]), f"https://example.com/{platform_id}",
             at, at, at),
        )  # fmt: skip
    return post_id


def test_tweets_are_read_100_per_request_with_their_public_metrics(world: dict[str, Any]) -> None:
    rt, x = world["rt"], world["x"]
    tweets = [x.add_tweet(f"tweet {i}") for i in range(150)]
    for i, tweet_id in enumerate(tweets):
        x.set_metrics(tweet_id, impression_count=1000 + i, like_count=30, retweet_count=4, quote_count=1,
                      reply_count=2, bookmark_count=5)  # fmt: skip
        delivered(rt, "x:main", tweet_id)
    x.delete_tweet(tweets[7])
    report = fetch_round(rt, new_round(), platforms=("x",))
    assert x.calls("lookup") == 2 and report.requests == {"x": 2}
    assert report.sampled == 149 and report.gone == 1
    sample = rt.store.one(
        "SELECT s.* FROM insight_samples AS s JOIN insight_items AS i ON i.id = s.item_id WHERE i.platform_id = ?",
        (tweets[0],),
    )
    assert sample is not None
    assert (sample["views"], sample["forwards"], sample["replies"], sample["reactions"]) == (1000, 5, 2, 30)
    assert json.loads(sample["reactions_json"]) == {"like": 30, "bookmark": 5}


def test_x_429_reschedules_and_the_round_resumes_without_doubles(world: dict[str, Any]) -> None:
    rt, x = world["rt"], world["x"]
    for i in range(120):
        delivered(rt, "x:main", x.add_tweet(f"tweet {i}"))
    x.script("lookup", "status", times=1, status=429, body={"title": "Too Many Requests", "status": 429},
             seconds=900, headers={"x-rate-limit-remaining": "0"})  # fmt: skip
    round_ = new_round()
    with pytest.raises(Reschedule) as wait:
        fetch_round(rt, round_, platforms=("x",))
    assert wait.value.delay > 800
    fetch_round(rt, round_, platforms=("x",))
    counts = rt.store.query("SELECT item_id, COUNT(*) AS n FROM insight_samples WHERE round = ? GROUP BY item_id",
                            (round_,))  # fmt: skip
    assert len(counts) == 120 and {c["n"] for c in counts} == {1}


def test_instagram_media_are_read_50_per_request_and_a_deleted_one_does_not_sink_its_batch(
    world: dict[str, Any],
) -> None:
    rt, ig = world["rt"], world["ig"]
    media = [ig.add_media(f"post {i}") for i in range(60)]
    for i, media_id in enumerate(media):
        ig.set_metrics(media_id, likes=10 + i, comments=3, views=500 + i, shares=2)
        delivered(rt, "instagram:brand", media_id)
    ig.set_metrics(media[1], likes=4, comments=1)  # insights not available yet: no views
    ig.delete_media(media[5])
    report = fetch_round(rt, new_round(), platforms=("instagram",))
    assert report.sampled == 59 and report.gone == 1
    assert ig.calls("ids") == 3  # 50 + 10, and the first 50 again without the deleted one
    rows = {r["platform_id"]: r for r in rt.store.query("SELECT * FROM insight_items")}
    assert (rows[media[0]]["views"], rows[media[0]]["forwards"], rows[media[0]]["replies"],
            rows[media[0]]["reactions"]) == (500, 2, 3, 10)  # fmt: skip
    assert rows[media[1]]["views"] is None and rows[media[1]]["reactions"] == 4
    assert rows[media[5]]["gone"] == 1
