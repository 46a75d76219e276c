"""Collect jobs against a scripted Telegram (real Telethon errors), real Valkey and SQLite."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry
from telethon import errors

from contentq.clock import now, parse
from contentq.intake.collect import MAX_PER_RUN
from contentq.integrations.telegram.gateway import MediaInfo
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from contentq.store.jobs import get_job, job_events
from tests.collect_helpers import ROUTES, channel, collect, posts
from tests.fake_telegram import FakeTelegram


@pytest.fixture
def tg(rt) -> FakeTelegram:
    (rt.settings.home / "contentq.toml").write_text(ROUTES)
    fake = FakeTelegram()
    rt.services["telegram"] = fake
    return fake


def test_incremental_fetch_takes_only_messages_newer_than_the_cursor(rt, tg):
    for i in (1, 2, 3):
        tg.add_message("@donor_a", i, f"<b>News</b> number {i}")
    job = collect(rt)
    assert job["status"] == "succeeded"
    assert [p["source_msg_id"] for p in posts(rt)] == [1, 2, 3]
    assert all(p["state"] == "collected" and p["route"] == "news" for p in posts(rt))
    assert posts(rt)[0]["text_html"] == "<b>News</b> number 1"
    assert channel(rt)["last_message_id"] == 3 and channel(rt)["last_collected_at"]
    assert json.loads(job["result"])["collected"] == 3

    tg.add_message("@donor_a", 4, "fourth")
    tg.add_message("@donor_a", 5, "fifth")
    job = collect(rt)
    fetches = [arg for name, arg in tg.calls if name == "fetch_messages"]
    assert fetches[-1] == ("@donor_a", 3, MAX_PER_RUN)  # from the cursor, not from the start
    assert [p["source_msg_id"] for p in posts(rt)] == [1, 2, 3, 4, 5]
    assert json.loads(job["result"])["collected"] == 2
    assert channel(rt)["last_message_id"] == 5 and channel(rt)["collected_count"] == 5
    counts = [e for e in job_events(rt.store, job["id"]) if e["event"] == "counts"]
    assert "2 collected, 0 duplicate, 0 filtered, 0 reconnects, 0 flood waits" in counts[0]["message"]


def test_first_run_takes_the_backfill_and_the_channel_is_resolved_once(rt, tg):
    rt.settings.collect_backfill = 2
    for i in range(1, 6):
        tg.add_message("@donor_a", i, f"message {i}")
    collect(rt)
    assert [p["source_msg_id"] for p in posts(rt)] == [4, 5]  # the newest two
    tg.add_message("@donor_a", 6, "message 6")
    collect(rt)
    assert [p["source_msg_id"] for p in posts(rt)] == [4, 5, 6]
    assert [name for name, _ in tg.calls].count("resolve") == 1  # cached in SQLite afterwards
    assert channel(rt)["tg_id"] == tg.channels["@donor_a"].id


def test_each_accepted_post_enqueues_its_rewrite_as_a_child(rt, tg):
    tg.add_message("@donor_a", 1, "first post")
    tg.add_message("@donor_a", 2, "second post")
    job = collect(rt)
    rewrites = rt.store.query("SELECT * FROM jobs WHERE kind = 'rewrite' ORDER BY post_id")
    ids = [p["id"] for p in posts(rt)]
    assert [r["post_id"] for r in rewrites] == ids
    assert [r["key"] for r in rewrites] == [str(i) for i in ids]
    assert all(r["parent_id"] == job["id"] and r["queue"] == "rewrite" for r in rewrites)
    assert json.loads(rewrites[0]["payload"]) == {"post_id": ids[0]}


def test_a_three_item_album_becomes_one_post_with_three_media(rt, tg):
    first = MediaInfo("photo", "image/jpeg", width=800, height=600)
    tg.add_message("@donor_a", 10, "<i>Album</i> caption", media=first, grouped_id=77)
    tg.add_message("@donor_a", 11, media=MediaInfo("photo", "image/jpeg"), grouped_id=77)
    tg.add_message("@donor_a", 12, media=MediaInfo("video", "video/mp4"), grouped_id=77, data=b"video bytes")
    tg.add_message("@donor_a", 13, "after the album")
    collect(rt)
    stored = posts(rt)
    assert len(stored) == 2
    album = stored[0]
    assert album["kind"] == "album" and album["grouped_id"] == 77
    assert json.loads(album["source_msg_ids"]) == [10, 11, 12]
    assert album["text_html"] == "<i>Album</i> caption"
    media = rt.store.query("SELECT * FROM media WHERE post_id = ? ORDER BY position", (album["id"],))
    assert [m["kind"] for m in media] == ["photo", "photo", "video"]
    assert media[0]["width"] == 800
    for m in media:  # content-addressed files under CONTENTQ_HOME/media
        path = rt.settings.media_dir / m["path"]
        assert path.is_file() and m["path"].startswith(m["sha256"][:2] + "/" + m["sha256"])
    assert (rt.settings.media_dir / media[2]["path"]).read_bytes() == b"video bytes"
    assert Path(media[2]["path"]).suffix == ".mp4"
    assert channel(rt)["last_message_id"] == 13


def test_flood_wait_reschedules_the_job_after_the_wait_and_notifies_once(rt, tg):
    rt.settings.tg_admin_chat = "@admin"
    tg.add_message("@donor_a", 1, "blocked for now")
    tg.fail_next("fetch_messages", errors.FloodWaitError(request=None, capture=300))
    row = enqueue(rt, "collect", "@donor_a", {"source": "@donor_a"})
    before = now()
    run_worker(rt, ["collect"], burst=True)

    job = get_job(rt.store, row["id"])
    assert job["status"] == "queued" and job["attempts"] == 1
    assert "FLOOD_WAIT of 300 s" in job["retry_reason"]
    wait = (parse(job["next_retry_at"]) - before).total_seconds()
    assert 300 < wait < 330
    events = [e["event"] for e in job_events(rt.store, row["id"])]
    assert "flood_wait" in events and events[-1] == "rescheduled"
    scheduled = ScheduledJobRegistry(queue=Queue("collect", connection=rt.redis))
    assert job["rq_id"] in scheduled.get_job_ids()
    at = scheduled.get_scheduled_time(job["rq_id"])
    assert timedelta(seconds=299) < at - before.replace(microsecond=0) < timedelta(seconds=331)

    notes = rt.store.query("SELECT * FROM notifications")
    assert len(notes) == 1
    assert notes[0]["message"].startswith("collect from @donor_a is blocked by Telegram for 300 s; resuming at ")
    assert len(tg.admin_messages) == 1 and tg.admin_messages[0][0] == "@admin"
    assert posts(rt) == []  # nothing stored, the cursor did not move
    assert channel(rt)["last_error"] == "FLOOD_WAIT 300 s"


def test_flood_wait_midway_keeps_what_was_stored_and_resumes_after_it(rt, tg):
    tg.add_message("@donor_a", 1, "first")
    tg.add_message("@donor_a", 2, "with a photo", media=MediaInfo("photo"))
    tg.fail_next("download_media", errors.FloodWaitError(request=None, capture=120))
    row = enqueue(rt, "collect", "@donor_a", {"source": "@donor_a"})
    run_worker(rt, ["collect"], burst=True)
    assert get_job(rt.store, row["id"])["status"] == "queued"
    assert [p["source_msg_id"] for p in posts(rt)] == [1]
    assert channel(rt)["last_message_id"] == 1
    flood = [e for e in job_events(rt.store, row["id"]) if e["event"] == "flood_wait"][0]
    assert json.loads(flood["data"])["collected"] == 1


def test_dead_session_reconnects_three_times_then_fails_and_notifies(rt, tg):
    tg.dead = True
    tg.add_message("@donor_a", 1, "unreachable")
    job = collect(rt)
    assert job["status"] == "failed" and job["attempts"] == 1  # not retried: reconnecting already failed
    assert "the Telegram session is down after 3 reconnects" in job["error"]
    assert tg.reconnects == 3
    events = [e["event"] for e in job_events(rt.store, job["id"])]
    assert events.count("reconnect") == 3
    notes = rt.store.query("SELECT * FROM notifications WHERE key = 'telegram-session'")
    assert len(notes) == 1 and "after 3 reconnects" in notes[0]["message"]
    assert posts(rt) == []


def test_a_dropped_connection_is_reconnected_and_the_run_goes_on(rt, tg):
    tg.connected = False
    tg.add_message("@donor_a", 1, "hello again")
    job = collect(rt)
    assert job["status"] == "succeeded"
    assert tg.reconnects == 1
    assert json.loads(job["result"])["reconnects"] == 1
    assert len(posts(rt)) == 1


def test_unauthorized_session_fails_at_once_and_says_to_log_in(rt, tg):
    tg.authorized = False
    job = collect(rt)
    assert job["status"] == "failed" and tg.reconnects == 0
    assert "run `contentq login`" in job["error"]
    assert rt.store.scalar("SELECT COUNT(*) FROM notifications") == 1


def test_transient_errors_are_retried_with_backoff(rt, tg):
    rt.settings.collect_backoff_base = 1.0
    tg.add_message("@donor_a", 1, "after a hiccup")
    tg.fail_next("fetch_messages", ConnectionError("reset by peer"))
    job = collect(rt)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert [e["event"] for e in job_events(rt.store, job["id"])].count("retrying") == 1
    assert len(posts(rt)) == 1


def test_unknown_or_private_source_fails_with_a_clear_message(rt, tg):
    job = collect(rt, "@donor_b")  # in the routes, but Telegram does not know it
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "cannot read @donor_b (UsernameNotOccupiedError)" in job["error"]
    assert channel(rt, "@donor_b")["last_error"].startswith("CollectFailed")

    job = collect(rt, "@stranger")
    assert job["status"] == "failed"
    assert "@stranger is not a source of any route" in job["error"]


def test_message_without_text_or_media_moves_the_cursor_only(rt, tg):
    tg.add_message("@donor_a", 1, "   ")
    tg.add_message("@donor_a", 2, "real text")
    collect(rt)
    assert [p["source_msg_id"] for p in posts(rt)] == [2]
    assert channel(rt)["last_message_id"] == 2


def test_collected_posts_without_rewrite_job_get_one_on_the_next_run(rt, tg):
    tg.add_message("@donor_a", 1, "will lose its job")
    collect(rt)
    rt.store.execute("DELETE FROM jobs WHERE kind = 'rewrite'")  # as if the process died before enqueueing
    collect(rt)
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'rewrite'") == 1


def test_no_session_fails_at_once_and_says_to_log_in(rt, tg, monkeypatch):
    from contentq.errors import ContentqError

    def no_session() -> None:
        raise ContentqError("no Telegram session: run `contentq login` (or set CONTENTQ_TG_SESSION)")

    monkeypatch.setattr(tg, "ensure_ready", no_session)
    job = collect(rt)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "no Telegram session: run `contentq login`" in job["error"]
    assert tg.reconnects == 0


# -- paging and albums at page edges -----------------------------------------------------------------

OLD = now() - timedelta(hours=1)  # settled albums: nothing more of them is still uploading


def photo() -> MediaInfo:
    return MediaInfo("photo", "image/jpeg")


def test_more_new_messages_than_one_page_are_taken_page_by_page_none_lost(rt, tg, monkeypatch):
    import contentq.intake.collect as collect_module

    monkeypatch.setattr(collect_module, "MAX_PER_RUN", 3)
    tg.add_message("@donor_a", 1, "one")
    collect(rt)
    for i in range(2, 9):
        tg.add_message("@donor_a", i, f"message {i}")
    collect(rt)
    assert [p["source_msg_id"] for p in posts(rt)] == [1, 2, 3, 4]  # the oldest page after the cursor
    assert channel(rt)["last_message_id"] == 4
    collect(rt)
    collect(rt)
    assert [p["source_msg_id"] for p in posts(rt)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert channel(rt)["last_message_id"] == 8


def test_an_album_cut_by_the_end_of_a_page_waits_for_the_next_run_whole(rt, tg, monkeypatch):
    import contentq.intake.collect as collect_module

    monkeypatch.setattr(collect_module, "MAX_PER_RUN", 3)
    tg.add_message("@donor_a", 1, "one")
    collect(rt)
    tg.add_message("@donor_a", 2, "two")
    tg.add_message("@donor_a", 3, "album caption", media=photo(), grouped_id=9, date=OLD)
    tg.add_message("@donor_a", 4, media=photo(), grouped_id=9, date=OLD)
    tg.add_message("@donor_a", 5, media=photo(), grouped_id=9, date=OLD)
    collect(rt)  # the page is 2, 3, 4: the album's last item is on the next page
    assert [p["source_msg_id"] for p in posts(rt)] == [1, 2] and channel(rt)["last_message_id"] == 2
    collect(rt)
    album = posts(rt)[-1]
    assert json.loads(album["source_msg_ids"]) == [3, 4, 5] and album["kind"] == "album"
    assert album["text_html"] == "album caption" and len(posts(rt)) == 3


def test_first_run_leaves_out_an_album_cut_by_the_backfill(rt, tg):
    rt.settings.collect_backfill = 3
    tg.add_message("@donor_a", 2, "album caption", media=photo(), grouped_id=9, date=OLD)
    tg.add_message("@donor_a", 3, media=photo(), grouped_id=9, date=OLD)
    tg.add_message("@donor_a", 4, media=photo(), grouped_id=9, date=OLD)
    tg.add_message("@donor_a", 5, "five")
    tg.add_message("@donor_a", 6, "six")
    collect(rt)  # the newest 3 are 4, 5, 6: item 4 alone would be a captionless photo post
    assert [json.loads(p["source_msg_ids"]) for p in posts(rt)] == [[5], [6]]
    assert channel(rt)["last_message_id"] == 6


def test_an_album_still_arriving_is_left_for_the_next_run(rt, tg):
    tg.add_message("@donor_a", 1, "one", date=OLD)
    tg.add_message("@donor_a", 2, "caption", media=photo(), grouped_id=7)  # posted just now
    tg.add_message("@donor_a", 3, media=photo(), grouped_id=7)
    collect(rt)
    assert [p["source_msg_id"] for p in posts(rt)] == [1] and channel(rt)["last_message_id"] == 1
    tg.add_message("@donor_a", 4, media=photo(), grouped_id=7)
    for message in tg.messages["@donor_a"]:
        object.__setattr__(message, "date", OLD)  # a minute later: the album is complete
    collect(rt)
    album = posts(rt)[-1]
    assert json.loads(album["source_msg_ids"]) == [2, 3, 4] and album["text_html"] == "caption"


def test_a_first_run_holding_back_its_only_album_starts_the_next_run_just_before_it(rt, tg):
    tg.add_message("@donor_a", 5, "caption", media=photo(), grouped_id=7)
    tg.add_message("@donor_a", 6, media=photo(), grouped_id=7)
    collect(rt)
    assert posts(rt) == [] and channel(rt)["last_message_id"] == 4
    for message in tg.messages["@donor_a"]:
        object.__setattr__(message, "date", OLD)
    collect(rt)
    assert [json.loads(p["source_msg_ids"]) for p in posts(rt)] == [[5, 6]]


def test_late_album_items_join_their_stored_post(rt, tg):
    tg.add_message("@donor_a", 10, "cap", media=photo(), grouped_id=7, date=OLD)
    tg.add_message("@donor_a", 11, media=photo(), grouped_id=7, date=OLD)
    collect(rt)
    tg.add_message("@donor_a", 12, media=MediaInfo("video", "video/mp4"), grouped_id=7, date=OLD, data=b"late")
    job = collect(rt)
    (album,) = posts(rt)
    assert json.loads(album["source_msg_ids"]) == [10, 11, 12] and album["kind"] == "album"
    assert album["text_html"] == "cap" and album["state"] == "collected"
    media = rt.store.query("SELECT * FROM media WHERE post_id = ? ORDER BY position", (album["id"],))
    assert [m["position"] for m in media] == [0, 1, 2] and media[2]["kind"] == "video"
    assert (rt.settings.media_dir / media[2]["path"]).read_bytes() == b"late"
    assert json.loads(job["result"])["collected"] == 0 and channel(rt)["last_message_id"] == 12


def test_late_album_items_of_a_post_already_rewritten_are_kept_as_its_duplicate(rt, tg):
    tg.add_message("@donor_a", 10, "cap", media=photo(), grouped_id=7, date=OLD)
    collect(rt)
    (first,) = posts(rt)
    rt.store.execute("UPDATE posts SET state = 'rewritten' WHERE id = ?", (first["id"],))
    tg.add_message("@donor_a", 11, media=photo(), grouped_id=7, date=OLD)
    collect(rt)
    late = posts(rt)[-1]
    assert late["id"] != first["id"] and late["state"] == "duplicate" and late["duplicate_of"] == first["id"]
    assert f"album of post {first['id']}, which was already rewritten" in late["state_reason"]
    assert json.loads(posts(rt)[0]["source_msg_ids"]) == [10]


def test_media_over_the_size_limit_is_recorded_without_downloading(rt, tg):
    rt.settings.collect_max_media_mb = 1
    big = MediaInfo("video", "video/mp4", size=5 * 1024 * 1024)
    tg.add_message("@donor_a", 20, "A long video", media=big, data=b"never fetched")
    tg.add_message("@donor_a", 21, "A small photo", media=MediaInfo("photo", "image/jpeg", size=2000))
    collect(rt)
    downloads = [arg for name, arg in tg.calls if name == "download_media"]
    assert downloads == [("@donor_a", 21)]
    (video_post, photo_post) = posts(rt)
    (video,) = rt.store.query("SELECT * FROM media WHERE post_id = ?", (video_post["id"],))
    assert video["kind"] == "video" and video["path"] is None and video["size"] == 5 * 1024 * 1024
    (photo,) = rt.store.query("SELECT * FROM media WHERE post_id = ?", (photo_post["id"],))
    assert photo["path"] is not None


def test_a_forwarded_posts_origin_is_stored_for_the_forward_credit(rt, tg):
    tg.add_message("@donor_a", 1, "Forwarded <b>news</b>", forward_name="Origin News",
                   forward_link="https://t.me/origin_news/42")  # fmt: skip
    tg.add_message("@donor_a", 2, "Our own words")
    assert collect(rt)["status"] == "succeeded"
    forwarded, own = posts(rt)
    assert (forwarded["is_forward"], forwarded["forward_name"], forwarded["forward_link"]) == (
        1, "Origin News", "https://t.me/origin_news/42",
    )  # fmt: skip
    assert (own["is_forward"], own["forward_name"], own["forward_link"]) == (0, None, None)


def test_collected_media_keep_their_kind_and_attributes_and_paid_media_is_filtered(rt, tg):
    tg.add_message("@donor_a", 1, "", media=MediaInfo("video_note", "video/mp4", 1000, 384, 384, duration=12.0))
    tg.add_message("@donor_a", 2, "Голосовое", media=MediaInfo("voice", "audio/ogg", 500, duration=7.0))
    tg.add_message("@donor_a", 3, "", media=MediaInfo("sticker", "image/webp", 300, 512, 512, emoji="😂"))
    tg.add_message("@donor_a", 4, "Спойлер", media=MediaInfo("photo", "image/jpeg", 900, 800, 600, spoiler=True))
    song = MediaInfo("audio", "audio/mpeg", 4000, file_name="song.mp3", duration=285.0, title="Группа крови",
                     performer="Кино")  # fmt: skip
    tg.add_message("@donor_a", 5, "Песня", media=song)
    tg.add_message("@donor_a", 6, "Платное фото за звёзды", paid_stars=50)
    tg.add_message("@donor_a", 7, "", paid_stars=0)  # no caption: still a post, filtered with its reason
    job = collect(rt)
    stored = {p["source_msg_id"]: p for p in posts(rt)}
    media = {i: rt.store.one("SELECT * FROM media WHERE post_id = ?", (p["id"],)) for i, p in stored.items() if i <= 5}
    assert [stored[i]["kind"] for i in range(1, 6)] == ["video_note", "voice", "sticker", "photo", "audio"]
    assert (media[1]["duration"], media[1]["width"], media[1]["height"]) == (12, 384, 384)
    assert media[2]["duration"] == 7 and media[3]["emoji"] == "😂" and media[4]["spoiler"] == 1
    assert (media[5]["title"], media[5]["performer"], media[5]["file_name"]) == ("Группа крови", "Кино", "song.mp3")
    for i in (6, 7):
        assert stored[i]["state"] == "filtered" and stored[i]["state_reason"].startswith("paid media")
    assert "(50 stars)" in stored[6]["state_reason"]
    assert json.loads(job["result"])["filtered"] == 2


def test_albums_of_one_second_are_told_apart_by_their_grouped_ids(rt, tg):
    from datetime import UTC, datetime

    second = datetime(2024, 6, 1, 7, 0, tzinfo=UTC)
    photo = MediaInfo("photo", "image/jpeg", 100, 16, 12)
    tg.add_message("@donor_a", 1, "Москва", media=photo, grouped_id=501, date=second)
    tg.add_message("@donor_a", 2, "", media=photo, grouped_id=501, date=second, data=b"moscow 2")
    tg.add_message("@donor_a", 3, "Казань", media=photo, grouped_id=502, date=second)
    tg.add_message("@donor_a", 4, "Сочи", media=photo, date=second, forward_name="РИА Новости")
    collect(rt)
    stored = posts(rt)
    assert [json.loads(p["source_msg_ids"]) for p in stored] == [[1, 2], [3], [4]]
    assert [p["text_html"] for p in stored] == ["Москва", "Казань", "Сочи"]


def test_a_route_taking_videos_still_takes_round_videos_and_gifs(rt, tg):
    (rt.settings.home / "contentq.toml").write_text(
        '[routes.news]\ntarget = "@mine"\nsources = ["@donor_a"]\nrewriter = "none"\n'
        '[routes.news.filters]\nmedia_types = ["video"]\n'
    )
    tg.add_message("@donor_a", 1, "", media=MediaInfo("video_note", "video/mp4", 10, 240, 240, duration=5.0))
    tg.add_message("@donor_a", 2, "Гифка", media=MediaInfo("animation", "video/mp4", 10, 320, 240, duration=2.0))
    tg.add_message("@donor_a", 3, "Стикер", media=MediaInfo("sticker", "image/webp", 10, 512, 512))
    collect(rt)
    assert [(p["kind"], p["state"]) for p in posts(rt)] == [
        ("video_note", "collected"), ("animation", "collected"), ("sticker", "filtered")]  # fmt: skip
    assert posts(rt)[2]["state_reason"] == "media_types: sticker is not one of video, video_note, animation"
