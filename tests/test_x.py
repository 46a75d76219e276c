"""Deliveries to X against a fake X API v2 over real HTTP (tests/fake_x.py): OAuth 1.0a, weighted length and
threads, images 4 per tweet, 429 with x-rate-limit-reset waited out without using a try, 403 duplicate content
final, an answer lost after the tweet was stored settled from the account's timeline, never sent twice."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine

from contentq.clock import iso, now, parse
from contentq.content.xtext import split_thread, weighted_length
from contentq.errors import DatabaseFullError
from contentq.integrations.oauth1 import signature
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue, retry
from contentq.runtime.worker import run_worker
from contentq.settings import get_settings, load_settings
from contentq.store.deliveries import parts_of
from contentq.store.jobs import get_job
from contentq.store.posts import get_post
from tests.conftest import drain
from tests.destination_helpers import X_ENV, deliver_job, delivery, routes_toml
from tests.fake_x import FakeX, weight
from tests.publish_helpers import add_media, add_post, fake, write_config


@pytest.fixture
def fx(tmp_path: Path) -> Iterator[FakeX]:
    server = FakeX(tmp_path / "x.db")
    server.start()
    yield server
    server.stop()


def make_rt(home: Path, monkeypatch: pytest.MonkeyPatch, config: str, **env: str) -> Runtime:
    settings_env = {"PUBLISH_BACKOFF_BASE": "1", "PUBLISH_MIN_INTERVAL": "0", "PUBLISH_ACCOUNT_BUDGET": "0", **env}
    for key, value in settings_env.items():
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    for key, value in X_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    write_config(home, config)
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    return runtime


@pytest.fixture
def xrt(home: Path, monkeypatch: pytest.MonkeyPatch, fx: FakeX) -> Iterator[Runtime]:
    runtime = make_rt(home, monkeypatch, routes_toml(["x:main"], x_api=fx.base_url))
    yield runtime
    runtime.close()


def publish(rt: Runtime, post_id: int) -> None:
    enqueue(rt, "publish", str(post_id), {}, post_id=post_id)
    drain(rt, "publish")


def scheduled(rt: Runtime, html: str) -> int:
    return add_post(rt, html, state="scheduled", scheduled_at=iso(now()))


# X's rules, pure ------------------------------------------------------------------------------------------


def test_oauth1_signature_matches_the_worked_example_in_x_docs() -> None:
    params = [
        ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
        ("include_entities", "true"),
        ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
        ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1318622958"),
        ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
        ("oauth_version", "1.0"),
    ]
    sig = signature(
        "POST", "https://api.twitter.com/1.1/statuses/update.json", params,
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw", "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    )  # fmt: skip
    assert sig == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", 5),
        ("see https://example.com/a/very/long/path/that/is/much/longer/than/twenty-three ok", 4 + 23 + 3),
        ("Привет", 6),  # Cyrillic weighs 1
        ("日本語", 6),  # CJK weighs 2
        ("👍🏽", 2),  # an emoji with its skin tone: one emoji, 2
        ("👨‍👩‍👧", 2),  # a ZWJ family: 2
        ("🇺🇦", 2),  # a flag
        ("e\u0301", 1),  # NFC: é
    ],
)
def test_weighted_length_counts_as_twitter_text(text: str, expected: int) -> None:
    assert weighted_length(text) == expected


def test_a_long_text_becomes_a_thread_cut_between_sentences_never_mid_word() -> None:
    rng = random.Random(3)
    sentences = [
        " ".join(rng.choice(["alpha", "бета", "gamma", "delta-epsilon", "zeta"]) for _ in range(rng.randint(3, 30)))
        + rng.choice([".", "!", "?"])
        for _ in range(120)
    ]
    text = "\n\n".join(" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6))
    tweets = split_thread(text)
    assert len(tweets) > 1
    assert all(weighted_length(t) <= 280 for t in tweets)
    words = text.split()
    body = [t.rsplit(" ", 1)[0] for t in tweets]  # without the " i/n" number
    assert " ".join(body).split() == words  # every word whole, in order, none lost
    assert all(b.rstrip().endswith((".", "!", "?")) for b in body[:-1])  # no sentence cut (they are short here)
    assert tweets[0].endswith(f" 1/{len(tweets)}") and tweets[-1].endswith(f" {len(tweets)}/{len(tweets)}")


def test_a_sentence_longer_than_a_tweet_is_cut_between_words() -> None:
    text = " ".join(["word"] * 200)  # one sentence of 999 characters
    tweets = split_thread(text, numbering=False)
    assert all(weighted_length(t) <= 280 for t in tweets)
    assert " ".join(tweets).split() == text.split()


# Deliveries -------------------------------------------------------------------------------------------------


def test_a_post_is_a_tweet_with_its_link_kept_and_its_link_recorded(xrt: Runtime, fx: FakeX) -> None:
    post_id = scheduled(xrt, 'Read <b>this</b>: <a href="https://example.com/story">the story</a> by @durov')
    publish(xrt, post_id)
    (tweet,) = fx.tweets()
    assert tweet["sent_text"] == "Read this: the story (https://example.com/story) by t.me/durov"
    row = delivery(xrt, post_id, "x:main")
    assert row["state"] == "published" and row["link"] == f"https://x.com/main_acct/status/{tweet['id']}"
    assert get_post(xrt.store, post_id)["state"] == "published"
    assert "@mention" in row["notes"]


def test_a_6000_character_post_is_a_thread_of_replies_each_within_280(xrt: Runtime, fx: FakeX) -> None:
    sentence = "Каждое предложение здесь примерно одинаковой длины, чтобы проверить разбиение. "
    html = "\n\n".join(sentence * 5 for _ in range(15))[:6000].rsplit(" ", 1)[0] + "."
    assert len(html) > 5900
    post_id = scheduled(xrt, html)
    publish(xrt, post_id)
    tweets = fx.tweets()
    assert len(tweets) >= 22  # 6000 characters, 280 each at most
    assert all(weight(t["sent_text"]) <= 280 for t in tweets)
    assert [t["reply_to"] for t in tweets] == [None] + [str(t["id"]) for t in tweets[:-1]]  # a reply chain
    row = delivery(xrt, post_id, "x:main")
    assert row["state"] == "published" and f"a thread of {len(tweets)} tweets" in row["notes"]
    assert len(parts_of(xrt.store, row["id"])) == len(tweets)


def test_an_album_of_ten_is_spread_four_per_tweet(xrt: Runtime, fx: FakeX) -> None:
    post_id = scheduled(xrt, "Ten photos")
    for i in range(10):
        add_media(xrt, post_id, position=i)
    publish(xrt, post_id)
    tweets = fx.tweets()
    assert [len(t["media"].split(",")) for t in tweets] == [4, 4, 2]
    assert [t["sent_text"] for t in tweets] == ["Ten photos 1/3", "2/3", "3/3"]
    assert "10 images spread over 3 tweets" in delivery(xrt, post_id, "x:main")["notes"]


def test_first4_keeps_four_images_and_says_the_rest_were_left_out(
    home: Path, monkeypatch: pytest.MonkeyPatch, fx: FakeX
) -> None:
    rt = make_rt(home, monkeypatch, routes_toml(["x:main"], x_api=fx.base_url, x_options='images = "first4"'))
    try:
        post_id = scheduled(rt, "Ten photos")
        for i in range(10):
            add_media(rt, post_id, position=i)
        publish(rt, post_id)
        (tweet,) = fx.tweets()
        assert len(tweet["media"].split(",")) == 4
        assert "6 of 10 images left out" in delivery(rt, post_id, "x:main")["notes"]
    finally:
        rt.close()


def test_x_at_its_rate_limit_waits_until_the_reset_without_using_a_try(
    home: Path, monkeypatch: pytest.MonkeyPatch, fx: FakeX
) -> None:
    with time_machine.travel(now(), tick=True) as traveller:
        rt = make_rt(home, monkeypatch, routes_toml(["telegram:@mychan", "x:main"], x_api=fx.base_url))
        try:
            tg = fake(rt)
            fx.rate_limit(reset_in=60)
            post_id = scheduled(rt, "Rate limited on X")
            enqueue(rt, "publish", str(post_id), {}, post_id=post_id)
            run_worker(rt, ["publish"], burst=True)  # the deliver jobs run in the same burst
            assert len(tg.visible("@mychan")) == 1  # Telegram is not held back
            row = delivery(rt, post_id, "x:main")
            assert row["state"] == "scheduled" and "X rate limit (429)" in row["state_reason"]
            wait = (parse(row["due_at"]) - now()).total_seconds()
            assert 55 < wait <= 62
            job = deliver_job(rt, post_id, "x:main")
            assert job["status"] == "queued" and (job["attempts"], job["reschedules"]) == (1, 1)
            assert fx.tweets() == [] and get_post(rt.store, post_id)["state"] == "publishing"

            traveller.shift(timedelta(seconds=62))
            run_worker(rt, ["publish"], burst=True)
            job = get_job(rt.store, job["id"])
            assert job["status"] == "succeeded"
            assert job["attempts"] - job["reschedules"] == 1  # one try used: the wait cost none
            assert [t["sent_text"] for t in fx.tweets()] == ["Rate limited on X"]
            assert delivery(rt, post_id, "x:main")["state"] == "published"
            assert get_post(rt.store, post_id)["state"] == "published"
            assert len(tg.visible("@mychan")) == 1
        finally:
            rt.close()


def test_duplicate_content_is_final_with_a_clear_reason(xrt: Runtime, fx: FakeX) -> None:
    first = scheduled(xrt, "Same words twice")
    publish(xrt, first)
    second = scheduled(xrt, "Same words twice")
    publish(xrt, second)
    assert len(fx.tweets()) == 1
    row = delivery(xrt, second, "x:main")
    assert row["state"] == "failed" and "duplicate content" in row["state_reason"]
    job = deliver_job(xrt, second, "x:main")
    assert job["status"] == "failed" and job["attempts"] == 1  # not retried
    assert get_post(xrt.store, second)["state"] == "failed"


def test_wrong_credentials_fail_the_delivery_and_say_which_variables(
    home: Path, monkeypatch: pytest.MonkeyPatch, fx: FakeX
) -> None:
    rt = make_rt(home, monkeypatch, routes_toml(["x:main"], x_api=fx.base_url))
    monkeypatch.setenv("CONTENTQ_X_MAIN_ACCESS_TOKEN_SECRET", "wrong-secret-value")
    try:
        post_id = scheduled(rt, "Bad keys")
        publish(rt, post_id)
        row = delivery(rt, post_id, "x:main")
        assert row["state"] == "failed" and "CONTENTQ_X_MAIN_CONSUMER_KEY" in row["state_reason"]
        assert "wrong-secret-value" not in (row["state_reason"] or "")
    finally:
        rt.close()


def test_an_answer_lost_after_the_tweet_was_stored_is_settled_from_the_timeline_not_sent_again(
    home: Path, monkeypatch: pytest.MonkeyPatch, fx: FakeX
) -> None:
    rt = make_rt(home, monkeypatch, routes_toml(["x:main"], x_api=fx.base_url), DESTINATION_TIMEOUT="1")
    try:
        fx.script("tweets", "hang_after", seconds=2)  # stored, then the answer comes too late for the client
        post_id = scheduled(rt, "Exactly once, with a link https://example.com/page")
        publish(rt, post_id)
        tweets = fx.tweets()
        assert len(tweets) == 1 and tweets[0]["text"].startswith("Exactly once, with a link https://t.co/")
        row = delivery(rt, post_id, "x:main")
        assert row["state"] == "published" and row["link"].endswith(str(tweets[0]["id"]))
        job = deliver_job(rt, post_id, "x:main")
        assert job["attempts"] == 2  # the lost answer used a try; the second found the tweet and sent nothing
        assert fx.calls("tweets") == 1
    finally:
        rt.close()


def test_a_request_that_never_took_effect_is_sent_again(home: Path, monkeypatch: pytest.MonkeyPatch, fx: FakeX) -> None:
    rt = make_rt(home, monkeypatch, routes_toml(["x:main"], x_api=fx.base_url), DESTINATION_TIMEOUT="1")
    try:
        fx.script("tweets", "hang_before", seconds=2)  # the request hangs and is dropped: nothing stored
        post_id = scheduled(rt, "Sent on the second try")
        publish(rt, post_id)
        assert [t["sent_text"] for t in fx.tweets()] == ["Sent on the second try"]
        assert delivery(rt, post_id, "x:main")["state"] == "published"
        assert fx.calls("tweets") == 2
    finally:
        rt.close()


def test_jobs_retry_continues_a_half_sent_thread_without_repeating_a_tweet(xrt: Runtime, fx: FakeX) -> None:
    post_id = scheduled(xrt, "\n\n".join(f"Paragraph {i}: " + "word " * 50 for i in range(3)))
    fx.script("tweets", "pass")  # the first tweet goes out, the second is refused (final)
    fx.script("tweets", "status", status=400, body={"title": "Invalid Request", "detail": "scripted refusal"})
    publish(xrt, post_id)
    row = delivery(xrt, post_id, "x:main")
    assert row["state"] == "failed" and "scripted refusal" in row["state_reason"]
    assert len(fx.tweets()) == 1
    retry(xrt, deliver_job(xrt, post_id, "x:main")["id"])
    drain(xrt, "publish")
    tweets = fx.tweets()
    assert len(tweets) == 3 and len({t["sent_text"] for t in tweets}) == 3
    assert [t["reply_to"] for t in tweets] == [None, str(tweets[0]["id"]), str(tweets[1]["id"])]
    assert delivery(xrt, post_id, "x:main")["state"] == "published"


def test_a_moment_of_full_disk_mid_thread_costs_the_delivery_nothing(
    xrt: Runtime, fx: FakeX, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tweet 1 is out and recorded; the job's log line after it meets a full disk for a moment. That is the
    # machine's trouble (as for a Telegram publish, test_db_busy.py): the job runs again and sends the rest, each
    # tweet once; it must not fail the delivery or the post, nor spend a try.
    from contentq.store import jobs as store_jobs

    post_id = scheduled(xrt, "\n\n".join(f"Paragraph {i}: " + "word " * 50 for i in range(3)))
    real = store_jobs.log_event
    refused: list[str] = []

    def log_event(store, job_id, event, message="", **kw):  # type: ignore[no-untyped-def]
        if event == "sent" and not refused:
            refused.append(job_id)
            raise DatabaseFullError("the disk holding the database is full")
        return real(store, job_id, event, message, **kw)

    monkeypatch.setattr(store_jobs, "log_event", log_event)
    publish(xrt, post_id)
    assert refused
    row = delivery(xrt, post_id, "x:main")
    assert row["state"] == "published", row["state_reason"]
    assert get_post(xrt.store, post_id)["state"] == "published"
    tweets = fx.tweets()
    assert len(tweets) == 3 and len({t["sent_text"] for t in tweets}) == 3  # each once
    assert [t["reply_to"] for t in tweets] == [None, str(tweets[0]["id"]), str(tweets[1]["id"])]
    job = get_job(xrt.store, deliver_job(xrt, post_id, "x:main")["id"])
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
