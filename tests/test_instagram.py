"""Deliveries to Instagram against a fake Graph API over real HTTP (tests/fake_instagram.py) that downloads the
images from a real static server of CONTENTQ_HOME/media: containers, carousels, captions within 2,200 characters
and 30 hashtags, links as "link in bio", a card for a text-only post, the 24 h quota read and waited for, a
publish whose answer was lost settled from the container's status, never published twice."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from contentq.clock import iso, now, parse
from contentq.errors import DatabaseFullError
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from contentq.settings import get_settings, load_settings
from contentq.store.posts import get_post
from tests.conftest import drain
from tests.destination_helpers import IG_ENV, StaticServer, deliver_job, delivery, routes_toml
from tests.fake_instagram import FakeInstagram
from tests.publish_helpers import add_media, add_post, write_config


def jpeg(colour: str = "red", size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def fig(tmp_path: Path) -> Iterator[FakeInstagram]:
    server = FakeInstagram(tmp_path / "ig.db")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def static(home: Path) -> Iterator[StaticServer]:
    server = StaticServer(home / "media")
    yield server
    server.stop()


def make_rt(
    home: Path, monkeypatch: pytest.MonkeyPatch, fig: FakeInstagram, public_url: str, ig_options: str = "", **env: str
) -> Runtime:
    for key, value in {"PUBLISH_BACKOFF_BASE": "1", "INSTAGRAM_POLL_SECONDS": "0.05", **env}.items():
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    for key, value in IG_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    write_config(
        home, routes_toml(["instagram:brand"], ig_api=fig.base_url, public_url=public_url, ig_options=ig_options)
    )
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    return runtime


@pytest.fixture
def igrt(home: Path, monkeypatch: pytest.MonkeyPatch, fig: FakeInstagram, static: StaticServer) -> Iterator[Runtime]:
    runtime = make_rt(home, monkeypatch, fig, static.url)
    yield runtime
    runtime.close()


def scheduled(rt: Runtime, html: str) -> int:
    return add_post(rt, html, state="scheduled", scheduled_at=iso(now()))


def publish(rt: Runtime, post_id: int) -> None:
    enqueue(rt, "publish", str(post_id), {}, post_id=post_id)
    drain(rt, "publish")


def public_files(home: Path) -> list[Path]:
    folder = home / "media" / "public"
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def test_a_text_only_post_gets_an_image_card_and_is_published_once(
    igrt: Runtime, fig: FakeInstagram, home: Path, static: StaticServer
) -> None:
    post_id = scheduled(igrt, "<b>Big news</b> today: something happened.")
    publish(igrt, post_id)
    (media,) = fig.media()
    assert media["caption"] == "Big news today: something happened." and media["media_type"] == "IMAGE"
    (container,) = fig.containers()
    assert container["image_url"].startswith(f"{static.url}/public/")  # fetched from the public base by the fake
    assert len(Path(container["image_url"]).stem) >= 32  # an unguessable name
    row = delivery(igrt, post_id, "instagram:brand")
    assert row["state"] == "published" and row["link"] == f"https://www.instagram.com/p/FAKE{media['id']}/"
    assert "image card" in row["notes"]
    assert public_files(home) == []  # the copies are removed once published
    assert get_post(igrt.store, post_id)["state"] == "published"


def test_an_album_is_a_carousel_of_its_images(igrt: Runtime, fig: FakeInstagram) -> None:
    post_id = scheduled(igrt, "Three photos")
    for i, colour in enumerate(("red", "green", "blue")):
        add_media(igrt, post_id, position=i, data=jpeg(colour))
    publish(igrt, post_id)
    (media,) = fig.media()
    assert media["media_type"] == "CAROUSEL_ALBUM" and media["children"] == 3
    containers = fig.containers()
    assert [c["kind"] for c in containers] == ["IMAGE", "IMAGE", "IMAGE", "CAROUSEL"]
    assert all(c["carousel_item"] for c in containers[:3])
    assert len({c["image_sha"] for c in containers[:3]}) == 3  # three different images went up
    assert "a carousel of 3 images" in delivery(igrt, post_id, "instagram:brand")["notes"]


def test_the_caption_keeps_within_2200_and_30_hashtags_and_links_become_link_in_bio(
    igrt: Runtime, fig: FakeInstagram
) -> None:
    tags = " ".join(f"#tag{i}" for i in range(40))
    body = "Lorem ipsum dolor sit amet. " * 120
    html = f'{tags}\n\n<a href="https://example.com/a">Read more</a> at https://example.com/b\n\n{body}'
    post_id = scheduled(igrt, html)
    publish(igrt, post_id)
    (media,) = fig.media()
    caption = media["caption"]
    assert len(caption) <= 2200 and caption.endswith("…\n\nLink in bio")
    assert caption.count("#tag") == 30 and "#tag29" in caption and "#tag30" not in caption
    assert "https://" not in caption and "Read more at" in caption
    notes = delivery(igrt, post_id, "instagram:brand")["notes"]
    assert "10 hashtag(s) over Instagram's 30 removed" in notes and "caption cut to" in notes


def test_links_can_be_dropped_without_a_link_in_bio_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, fig: FakeInstagram, static: StaticServer
) -> None:
    rt = make_rt(home, monkeypatch, fig, static.url, ig_options='links = "drop"')
    try:
        post_id = scheduled(rt, 'See <a href="https://example.com">our site</a> https://t.me/x/1 now')
        publish(rt, post_id)
        assert fig.media()[0]["caption"] == "See our site now"
    finally:
        rt.close()


def test_at_the_24h_quota_the_delivery_is_scheduled_after_the_window_opens_with_the_reason(
    igrt: Runtime, fig: FakeInstagram
) -> None:
    fig.set_quota(2)
    fig.published_before(20 * 3600, 10 * 3600)  # the window opens when the older is 24 h old: in 4 h
    post_id = scheduled(igrt, "Waits for the window")
    enqueue(igrt, "publish", str(post_id), {}, post_id=post_id)
    run_worker(igrt, ["publish"], burst=True)
    row = delivery(igrt, post_id, "instagram:brand")
    assert row["state"] == "scheduled"
    assert "publishing limit is reached (2 of 2): the window opens at" in row["state_reason"]
    wait = (parse(row["due_at"]) - now()).total_seconds()
    assert abs(wait - 4 * 3600) < 60
    job = deliver_job(igrt, post_id, "instagram:brand")
    assert job["status"] == "queued" and job["reschedules"] == 1 and job["attempts"] == 1
    assert abs((parse(job["next_retry_at"]) - now()).total_seconds() - 4 * 3600) < 60
    assert fig.calls("media_publish") == 0 and fig.calls("media") <= 1  # found before publishing, not by a refusal
    assert len(fig.media()) == 2
    assert get_post(igrt.store, post_id)["state"] == "publishing"


def test_an_answer_lost_after_the_publish_is_settled_from_the_container_not_published_twice(
    home: Path, monkeypatch: pytest.MonkeyPatch, fig: FakeInstagram, static: StaticServer
) -> None:
    rt = make_rt(home, monkeypatch, fig, static.url, DESTINATION_TIMEOUT="1")
    try:
        fig.script("media_publish", "hang_after", seconds=2)
        post_id = scheduled(rt, "Exactly once on Instagram")
        publish(rt, post_id)
        (media,) = fig.media()
        row = delivery(rt, post_id, "instagram:brand")
        assert row["state"] == "published" and row["link"] == f"https://www.instagram.com/p/FAKE{media['id']}/"
        assert fig.calls("media_publish") == 1
        assert deliver_job(rt, post_id, "instagram:brand")["attempts"] == 2
    finally:
        rt.close()


def test_an_unreachable_public_media_url_fails_the_delivery_and_says_what_to_check(
    home: Path, monkeypatch: pytest.MonkeyPatch, fig: FakeInstagram
) -> None:
    rt = make_rt(home, monkeypatch, fig, "http://127.0.0.1:9/nothing-here")
    try:
        post_id = scheduled(rt, "Nobody can fetch my card")
        publish(rt, post_id)
        row = delivery(rt, post_id, "instagram:brand")
        assert row["state"] == "failed" and "2207052" in row["state_reason"]
        assert fig.media() == []
    finally:
        rt.close()


def test_a_wrong_token_fails_the_delivery_naming_the_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch, fig: FakeInstagram, static: StaticServer
) -> None:
    rt = make_rt(home, monkeypatch, fig, static.url)
    monkeypatch.setenv("CONTENTQ_INSTAGRAM_BRAND_ACCESS_TOKEN", "IGQVJ-expired-token-xyz")
    try:
        post_id = scheduled(rt, "Expired token")
        publish(rt, post_id)
        row = delivery(rt, post_id, "instagram:brand")
        assert row["state"] == "failed" and "CONTENTQ_INSTAGRAM_BRAND_ACCESS_TOKEN" in row["state_reason"]
        assert "IGQVJ-expired-token-xyz" not in row["state_reason"]
    finally:
        rt.close()


def test_window_opening_is_computed_from_the_oldest_post_of_the_window(igrt: Runtime, fig: FakeInstagram) -> None:
    from contentq.publish.deliver_instagram import instagram_client, window_opens

    fig.published_before(23 * 3600, 5 * 3600, 3600)
    client = instagram_client(igrt, "brand")
    opens = window_opens(client, usage=3, total=3, duration=86400)
    assert opens is not None and abs((opens - (now() + timedelta(hours=1))).total_seconds()) < 5
    opens = window_opens(client, usage=3, total=2, duration=86400)  # two must leave: the second oldest, in 19 h
    assert opens is not None and abs((opens - (now() + timedelta(hours=19))).total_seconds()) < 5


def test_a_moment_of_full_disk_after_media_publish_costs_the_delivery_nothing(
    igrt: Runtime, fig: FakeInstagram, monkeypatch: pytest.MonkeyPatch
) -> None:
    # media_publish answered, then the job's log line meets a full disk for a moment: the job runs again (no try
    # spent), finds the container published and records it; the post is published once, not failed.
    from contentq.store import jobs as store_jobs

    post_id = scheduled(igrt, "Published while the disk was full for a moment.")
    real = store_jobs.log_event
    refused: list[str] = []

    def log_event(store, job_id, event, message="", **kw):  # type: ignore[no-untyped-def]
        if event == "sent" and not refused:
            refused.append(job_id)
            raise DatabaseFullError("the disk holding the database is full")
        return real(store, job_id, event, message, **kw)

    monkeypatch.setattr(store_jobs, "log_event", log_event)
    publish(igrt, post_id)
    assert refused
    row = delivery(igrt, post_id, "instagram:brand")
    assert row["state"] == "published", row["state_reason"]
    assert len(fig.media()) == 1 and get_post(igrt.store, post_id)["state"] == "published"
    job = igrt.store.one("SELECT status, attempts FROM jobs WHERE kind = 'deliver' AND post_id = ?", (post_id,))
    assert job is not None and (job["status"], job["attempts"]) == ("succeeded", 1)
