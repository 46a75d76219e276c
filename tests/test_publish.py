"""Publishing through the fake gateway (which refuses a reused random_id like Telegram), real Valkey and SQLite:
text, albums in one call, caption overflow, a failing part cancelling the batch, flood waits, crashes after
a send, Telegram unreachable, rate control, restarts with `contentq jobs retry`, the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from rq.registry import ScheduledJobRegistry
from telethon import errors
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now, parse
from contentq.errors import FatalJobError, Reschedule
from contentq.flow.dispatch import dispatch
from contentq.publish.core import publish_post
from contentq.publish.ledger import random_id_for, sends_of
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.worker import run_worker
from contentq.settings import get_settings, load_settings
from contentq.store.jobs import get_job, job_events
from contentq.store.posts import get_post
from tests.conftest import drain
from tests.fake_telegram import FakeTelegram
from tests.publish_helpers import add_media, add_post, fake, notifications, route_toml, write_config


@pytest.fixture
def prt(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A runtime with quick retries and no rate limits (the CLI invoked in a test sees the same settings)."""
    for key, value in {
        "PUBLISH_BACKOFF_BASE": "1",
        "PUBLISH_MIN_INTERVAL": "0",
        "PUBLISH_ACCOUNT_BUDGET": "0",
        "PUBLISH_UNREACHABLE_RETRY": "1",
        "PUBLISH_UNREACHABLE_LIMIT": "3",
        "WORKER_MAINTENANCE_INTERVAL": "1",
    }.items():
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    get_settings.cache_clear()
    write_config(home, route_toml())
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def scheduled_post(rt: Runtime, html: str = "Hello <b>world</b>", **kw: object) -> int:
    return add_post(rt, html, state="scheduled", scheduled_at=iso(now()), **kw)  # type: ignore[arg-type]


def publish_job(rt: Runtime, post_id: int) -> dict:
    row = rt.store.one("SELECT * FROM jobs WHERE kind = 'publish' AND post_id = ? ORDER BY rowid DESC", (post_id,))
    assert row is not None
    return row


def events(rt: Runtime, job_id: str) -> list[str]:
    return [e["event"] for e in job_events(rt.store, job_id)]


def sends_calls(tg: FakeTelegram) -> list[tuple[str, str]]:
    return [arg for method, arg in tg.calls if method == "send"]


def test_text_post_is_published_with_ids_and_link(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt)
    assert dispatch(prt)["now"] == 1
    drain(prt, "publish")
    post = get_post(prt.store, post_id)
    assert post["state"] == "published"
    visible = tg.visible("@mychan")
    assert [m.html for m in visible] == ["Hello <b>world</b>"]
    assert json.loads(post["message_ids"]) == [visible[0].message_id]
    assert post["link"] == f"https://t.me/mychan/{visible[0].message_id}"
    # The random id was derived from (post, target, round, part, item) and recorded before the send.
    (send,) = sends_of(prt.store, post_id)
    assert send["status"] == "sent" and send["random_id"] == random_id_for(post_id, 1234567, 0, 0, 0)
    assert visible[0].random_id == send["random_id"]
    job = publish_job(prt, post_id)
    assert job["status"] == "succeeded" and "published" in events(prt, job["id"])
    # The target was resolved once and cached.
    assert prt.store.one("SELECT tg_id FROM channels WHERE ref = '@mychan'")["tg_id"] == 1234567


def test_album_of_five_is_one_send(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt, "Five pictures", kind="album")
    for i in range(5):
        add_media(prt, post_id, "photo" if i % 2 == 0 else "video", position=i)
    dispatch(prt)
    drain(prt, "publish")
    assert sends_calls(tg) == [("@mychan", "album")]
    visible = tg.visible("@mychan")
    assert len(visible) == 5 and len({m.grouped_id for m in visible}) == 1
    assert visible[0].html == "Five pictures" and all(m.html == "" for m in visible[1:])
    assert [m.kind for m in visible] == ["photo", "video", "photo", "video", "photo"]
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and json.loads(post["message_ids"]) == [m.message_id for m in visible]
    (send,) = sends_of(prt.store, post_id)
    assert len(json.loads(send["random_ids"])) == 5


def test_caption_over_the_limit_is_a_two_part_batch(prt):
    tg = fake(prt)
    long_text = "Long caption. " * 100  # 1400 characters > 1024
    post_id = scheduled_post(prt, long_text.strip(), kind="photo")
    add_media(prt, post_id, "photo")
    dispatch(prt)
    drain(prt, "publish")
    assert sends_calls(tg) == [("@mychan", "media"), ("@mychan", "text")]
    photo, text = tg.visible("@mychan")
    assert photo.kind == "photo" and photo.html == ""
    assert text.kind is None and text.html == long_text.strip()
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and json.loads(post["message_ids"]) == [photo.message_id, text.message_id]
    assert "caption_moved" in events(prt, publish_job(prt, post_id)["id"])


def test_premium_account_allows_a_longer_caption(prt):
    tg = fake(prt, premium=True)
    post_id = scheduled_post(prt, "x" * 1500, kind="photo")
    add_media(prt, post_id, "photo")
    dispatch(prt)
    drain(prt, "publish")
    assert sends_calls(tg) == [("@mychan", "media")]
    assert get_post(prt.store, post_id)["state"] == "published"


def test_part_two_failing_deletes_part_one_fails_the_post_and_notifies(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt, "y" * 1500, kind="photo")
    add_media(prt, post_id, "photo")
    tg.fail_next("send", None, errors.ChatWriteForbiddenError(request=None))
    dispatch(prt)
    drain(prt, "publish")
    assert tg.visible("@mychan") == []  # part 1 was sent, then deleted
    assert len(tg.sent) == 1 and tg.sent[0].deleted
    post = get_post(prt.store, post_id)
    assert post["state"] == "failed"
    assert "ChatWriteForbiddenError" in post["state_reason"]
    job = publish_job(prt, post_id)
    assert job["status"] == "failed" and job["attempts"] == 1  # a refused post is not retried
    (note,) = notifications(prt, f"publish-failed:{post_id}")
    assert note["level"] == "error" and "ChatWriteForbiddenError" in note["message"]
    assert [s["status"] for s in sends_of(prt.store, post_id)] == ["deleted", "failed"]
    assert post["publish_round"] == 1  # a restart sends with fresh random ids

    # The operator fixes the cause and restarts the publication: it goes out whole, and the restart is logged.
    result = CliRunner().invoke(app, ["jobs", "retry", job["id"]])
    assert result.exit_code == 0, result.output
    drain(prt, "publish")
    post = get_post(prt.store, post_id)
    assert post["state"] == "published"
    assert [m.kind or "text" for m in tg.visible("@mychan")] == ["photo", "text"]
    log = events(prt, job["id"])
    assert "restarted" in log and "restart" in log and log[-1] == "succeeded"
    restarted = next(e for e in job_events(prt.store, job["id"]) if e["event"] == "restarted")
    assert "restarted by the operator" in restarted["message"]


def test_flood_wait_reschedules_the_job_and_notifies_above_the_threshold(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt)
    tg.fail_next("send", errors.FloodWaitError(request=None, capture=900))
    dispatch(prt)
    run_worker(prt, ["publish"], burst=True)
    job = get_job(prt.store, publish_job(prt, post_id)["id"])
    assert job["status"] == "queued" and "FLOOD_WAIT of 900 s" in job["retry_reason"]
    wait = (parse(job["next_retry_at"]) - now()).total_seconds()
    assert 890 < wait < 1000  # 900 s plus jitter
    assert job["rq_id"] in ScheduledJobRegistry("publish", connection=prt.redis).get_job_ids()
    assert "rescheduled" in events(prt, job["id"])
    post = get_post(prt.store, post_id)
    assert post["state"] == "scheduled" and "FLOOD_WAIT" in post["state_reason"]
    assert tg.visible("@mychan") == []
    (note,) = notifications(prt, "flood:")
    assert "900 s" in note["message"]


def test_short_flood_wait_does_not_notify(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt)
    tg.fail_next("send", errors.FloodWaitError(request=None, capture=5))
    dispatch(prt)
    run_worker(prt, ["publish"], burst=True)
    assert get_job(prt.store, publish_job(prt, post_id)["id"])["status"] == "queued"
    assert notifications(prt, "flood:") == []


def test_crash_after_the_send_before_it_was_recorded_does_not_post_twice(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt, "Exactly once")
    tg.fail_after_next("send", RuntimeError("worker died after the request left"))
    dispatch(prt)
    drain(prt, "publish")
    assert [m.html for m in tg.visible("@mychan")] == ["Exactly once"]
    assert len(tg.sent) == 1
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and json.loads(post["message_ids"]) == [tg.sent[0].message_id]
    job = publish_job(prt, post_id)
    assert job["attempts"] == 2
    settled = [e for e in job_events(prt.store, job["id"]) if e["event"] == "settled"]
    assert settled and "was sent before" in settled[0]["message"]


class _BlindFake(FakeTelegram):
    """recent_messages misses the message once (e.g. it is older than the window looked at)."""

    hide_once: bool = True

    def recent_messages(self, target, limit=20):  # type: ignore[no-untyped-def]
        if self.hide_once:
            self.hide_once = False
            self.calls.append(("recent_messages", target.ref))
            return []
        return super().recent_messages(target, limit)


def test_uncertain_send_not_seen_is_resent_with_the_same_ids_and_telegram_refuses_it(prt):
    tg = _BlindFake()
    tg.add_channel("@mychan", 1234567)
    prt.services["telegram"] = tg
    post_id = scheduled_post(prt, "Seen by Telegram only")
    tg.fail_after_next("send", ConnectionError("connection dropped after the request left"))
    dispatch(prt)
    drain(prt, "publish")
    assert len(tg.sent) == 1  # the resend carried the same random id and was refused
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and json.loads(post["message_ids"]) == [tg.sent[0].message_id]
    messages = [e["message"] for e in job_events(prt.store, publish_job(prt, post_id)["id"])]
    assert any("refused the resend" in m for m in messages)


def test_telegram_unreachable_is_retried_then_fails_and_notifies(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt)
    tg.fail_next("ensure_ready", ConnectionError("no route to host"))
    dispatch(prt)
    drain(prt, "publish")
    assert get_post(prt.store, post_id)["state"] == "published"  # the second try got through
    log = events(prt, publish_job(prt, post_id)["id"])
    assert log.count("rescheduled") == 1

    other = scheduled_post(prt, "never")
    tg.fail_next("ensure_ready", *[ConnectionError("no route to host")] * 3)
    dispatch(prt)
    drain(prt, "publish")
    post = get_post(prt.store, other)
    assert post["state"] == "failed" and "unreachable" in post["state_reason"] and "3 tries" in post["state_reason"]
    assert publish_job(prt, other)["status"] == "failed"
    assert notifications(prt, f"publish-failed:{other}")


def test_rate_limit_per_target_reschedules_instead_of_sleeping(prt, monkeypatch):
    tg = fake(prt)
    prt.settings.publish_min_interval = 30
    first, second = scheduled_post(prt, "first"), scheduled_post(prt, "second")
    dispatch(prt)
    run_worker(prt, ["publish"], burst=True)
    assert get_post(prt.store, first)["state"] == "published"
    assert get_post(prt.store, second)["state"] == "scheduled"
    job = get_job(prt.store, publish_job(prt, second)["id"])
    assert job["status"] == "queued" and "rate limit" in job["retry_reason"]
    assert 25 < (parse(job["next_retry_at"]) - now()).total_seconds() <= 31
    assert [m.html for m in tg.visible("@mychan")] == ["first"]


def test_account_budget_reschedules(prt):
    fake(prt)
    prt.settings.publish_account_budget = 2
    ids = [scheduled_post(prt, f"post {i}") for i in range(3)]
    dispatch(prt)
    run_worker(prt, ["publish"], burst=True)
    states = [get_post(prt.store, i)["state"] for i in ids]
    assert states.count("published") == 2 and states.count("scheduled") == 1
    waiting = next(i for i, s in zip(ids, states, strict=True) if s == "scheduled")
    assert "rate limit" in get_job(prt.store, publish_job(prt, waiting)["id"])["retry_reason"]


def test_a_post_not_due_yet_is_not_sent_early(prt):
    tg = fake(prt)
    post_id = add_post(prt, state="scheduled", scheduled_at=iso(now()))
    prt.store.execute("UPDATE posts SET scheduled_at = ? WHERE id = ?", (iso(parse(iso()) + _td(40)), post_id))
    with pytest.raises(Reschedule) as wait:
        publish_post(prt, post_id)
    assert 30 < wait.value.delay <= 40 and tg.sent == []


def _td(seconds: float):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(seconds=seconds)


def test_missing_media_file_fails_the_post_clearly(prt):
    fake(prt)
    post_id = scheduled_post(prt, "pic", kind="photo")
    add_media(prt, post_id, "photo", data=b"gone")
    for f in prt.settings.media_dir.rglob("*.jpg"):
        f.unlink()
    with pytest.raises(FatalJobError, match="missing"):
        publish_post(prt, post_id)
    assert get_post(prt.store, post_id)["state"] == "failed"


def test_outbox_publisher_writes_html_media_and_metadata(prt, home):
    write_config(home, route_toml(extra='publisher = "outbox"'))
    tg = fake(prt)
    post_id = scheduled_post(prt, "Two <i>photos</i>", kind="album")
    add_media(prt, post_id, "photo", position=0, data=b"first")
    add_media(prt, post_id, "photo", position=1, data=b"second")
    dispatch(prt)
    drain(prt, "publish")
    folder = prt.settings.outbox_dir / "news" / str(post_id)
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and post["link"] == folder.as_uri()
    assert tg.sent == [] and tg.calls == []  # Telegram untouched
    assert sorted(p.name for p in folder.iterdir()) == ["01-photo.jpg", "02-photo.jpg", "meta.json", "post.html"]
    assert (folder / "01-photo.jpg").read_bytes() == b"first"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["post_id"] == post_id and meta["target"] == "@mychan" and meta["dry_run"] is False
    assert meta["parts"] == [
        {
            "number": 1,
            "kind": "album",
            "html": "Two <i>photos</i>",
            "length": 10,
            "media": ["01-photo.jpg", "02-photo.jpg"],
        }
    ]
    page = (folder / "post.html").read_text()
    assert "Two <i>photos</i>" in page and 'href="02-photo.jpg"' in page and 'class="tg-album"' in page


def test_dry_run_renders_to_the_outbox_without_touching_the_post(prt):
    tg = fake(prt)
    post_id = add_post(prt, "z" * 1200, kind="photo", state="awaiting_approval")
    add_media(prt, post_id, "photo")
    result = CliRunner().invoke(app, ["publish", str(post_id), "--dry-run"])
    assert result.exit_code == 0, result.output
    meta = json.loads((prt.settings.outbox_dir / "news" / str(post_id) / "meta.json").read_text())
    assert meta["dry_run"] is True and meta["caption_moved"] is True
    assert [p["kind"] for p in meta["parts"]] == ["media", "text"]
    assert get_post(prt.store, post_id)["state"] == "awaiting_approval" and tg.calls == []


def test_publish_now_from_the_cli_through_a_configured_gateway(prt, monkeypatch):
    """CONTENTQ_TG_GATEWAY selects a stand-in gateway factory (here the fake) instead of Telethon."""
    monkeypatch.setenv("CONTENTQ_TG_GATEWAY", "tests.fake_telegram:gateway_from_env")
    get_settings.cache_clear()
    post_id = add_post(prt, "Right now", state="awaiting_approval")
    result = CliRunner().invoke(app, ["publish", str(post_id), "--now"])
    assert result.exit_code == 0, result.output
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and post["link"].startswith("https://t.me/mychan/")
    again = CliRunner().invoke(app, ["publish", str(post_id)])
    assert again.exit_code != 0 and "already published" in str(again.exception)


def test_publish_without_now_queues_the_post_for_the_worker(prt):
    tg = fake(prt)
    post_id = add_post(prt, "Queued", state="rewritten")
    result = CliRunner().invoke(app, ["publish", str(post_id)])
    assert result.exit_code == 0, result.output
    assert get_post(prt.store, post_id)["state"] == "scheduled"
    drain(prt, "publish")
    assert get_post(prt.store, post_id)["state"] == "published"
    assert [m.html for m in tg.visible("@mychan")] == ["Queued"]


def test_long_flood_wait_between_parts_takes_back_the_half_sent_post(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt, "w" * 1500, kind="photo")
    add_media(prt, post_id, "photo")
    tg.fail_next("send", None, errors.FloodWaitError(request=None, capture=3600))
    dispatch(prt)
    run_worker(prt, ["publish"], burst=True)
    assert tg.visible("@mychan") == []  # the photo without its text does not stay up for an hour
    post = get_post(prt.store, post_id)
    assert post["state"] == "scheduled" and post["publish_round"] == 1
    assert get_job(prt.store, publish_job(prt, post_id)["id"])["status"] == "queued"


def test_short_flood_wait_between_parts_continues_where_it_stopped(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt, "v" * 1500, kind="photo")
    add_media(prt, post_id, "photo")
    tg.fail_next("send", None, errors.FloodWaitError(request=None, capture=1))
    dispatch(prt)
    drain(prt, "publish")
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and post["publish_round"] == 0
    assert len(tg.sent) == 2 and [m.kind or "text" for m in tg.visible("@mychan")] == ["photo", "text"]


def test_a_cancelled_publish_job_is_dispatched_again_later(prt):
    from datetime import timedelta

    from contentq.flow.dispatch import STALE_CLAIM_SECONDS
    from contentq.runtime.tracking import cancel

    fake(prt)
    post_id = scheduled_post(prt)
    dispatch(prt)
    cancel(prt, publish_job(prt, post_id)["id"])
    assert dispatch(prt)["dispatched"] == []
    later = now() + timedelta(seconds=STALE_CLAIM_SECONDS + 1)
    assert [d["post_id"] for d in dispatch(prt, current=later)["dispatched"]] == [post_id]
    drain(prt, "publish")
    assert get_post(prt.store, post_id)["state"] == "published"


# -- settling uncertain sends, cancelling, time limits (review findings) --------------------------------


def _long_photo_post(rt: Runtime, letter: str, data: bytes) -> int:
    """A photo whose text is over the caption limit: a captionless photo, then the text."""
    post_id = scheduled_post(rt, f"{letter} " * 700, kind="photo")
    add_media(rt, post_id, "photo", data=data)
    return post_id


def test_settling_never_takes_another_posts_captionless_photo(prt):
    tg = fake(prt)
    first = _long_photo_post(prt, "A", b"first photo")
    second = _long_photo_post(prt, "B", b"second photo")
    publish_post(prt, first)
    tg.fail_next("send", RuntimeError("crash before the request left"))
    with pytest.raises(RuntimeError):
        publish_post(prt, second, last_attempt=False)
    publish_post(prt, second)
    visible = tg.visible("@mychan")
    assert [m.kind or "text" for m in visible] == ["photo", "text", "photo", "text"]  # B's photo did go out
    a_ids = set(json.loads(get_post(prt.store, first)["message_ids"]))
    b_ids = json.loads(get_post(prt.store, second)["message_ids"])
    assert b_ids == [visible[2].message_id, visible[3].message_id] and not a_ids & set(b_ids)


def test_a_captionless_photo_among_several_is_not_guessed_and_never_sent_twice(prt):
    from tests.fake_telegram import SentMessage

    tg = fake(prt)
    post_id = _long_photo_post(prt, "P", b"my photo")
    tg.fail_after_next("send", ConnectionError("connection dropped after the request left"))
    with pytest.raises(Reschedule):
        publish_post(prt, post_id)
    # Someone posts another captionless photo in the channel meanwhile: two candidates, no way to tell.
    tg.sent.append(SentMessage("@mychan", 99_999, "", [], 0, now(), kind="photo"))
    publish_post(prt, post_id)
    photos = [m for m in tg.visible("@mychan") if m.kind == "photo"]
    assert len(photos) == 2  # ours once (the resend with the same random id was refused) and the other one
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and 99_999 not in json.loads(post["message_ids"])
    assert "could not be identified" in post["state_reason"]
    assert [(s["status"], json.loads(s["message_ids"])) for s in sends_of(prt.store, post_id)][0] == ("sent", [])
    (note,) = notifications(prt, f"publish-note:{post_id}")
    assert "message ids are unknown" in note["message"]


def test_a_refused_resend_is_settled_from_the_first_attempt_an_hour_ago(prt):
    tg = _BlindFake()
    tg.add_channel("@mychan", 1234567)
    prt.services["telegram"] = tg
    post_id = scheduled_post(prt, "Sent an hour ago")
    tg.fail_after_next("send", ConnectionError("connection dropped after the request left"))
    with pytest.raises(Reschedule):
        publish_post(prt, post_id)
    an_hour_ago = now() - timedelta(hours=1)
    tg.sent[0].at = an_hour_ago
    prt.store.execute("UPDATE sends SET created_at = ? WHERE post_id = ?", (iso(an_hour_ago), post_id))
    publish_post(prt, post_id)  # the first look misses it, the resend is refused: look again from the first try
    assert len(tg.sent) == 1
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and json.loads(post["message_ids"]) == [tg.sent[0].message_id]
    assert post["link"] == f"https://t.me/mychan/{tg.sent[0].message_id}"
    (send,) = sends_of(prt.store, post_id)
    assert send["created_at"] == iso(an_hour_ago)  # the retry kept the first attempt's time


def test_a_part_that_cannot_be_checked_is_not_treated_as_deleted(prt):
    tg = fake(prt)
    post_id = _long_photo_post(prt, "C", b"photo c")
    tg.fail_after_next("send", None, RuntimeError("worker died after the text left"))
    with pytest.raises(RuntimeError):
        publish_post(prt, post_id, last_attempt=False)
    assert len(tg.visible("@mychan")) == 2
    # The last attempt cannot look at the channel: the text may be visible, so nothing is taken back.
    tg.fail_next("recent_messages", RuntimeError("history unavailable"), RuntimeError("history unavailable"))
    with pytest.raises(FatalJobError):
        publish_post(prt, post_id)
    post = get_post(prt.store, post_id)
    assert post["state"] == "failed" and "check the channel" in post["state_reason"]
    assert post["publish_round"] == 0
    assert [s["status"] for s in sends_of(prt.store, post_id)] == ["sent", "attempting"]
    assert len(tg.visible("@mychan")) == 2
    assert notifications(prt, f"publish-cancel-failed:{post_id}")
    # Restarted, the publication completes by looking: nothing goes out twice.
    publish_post(prt, post_id)
    assert get_post(prt.store, post_id)["state"] == "published"
    assert [m.kind or "text" for m in tg.visible("@mychan")] == ["photo", "text"] and len(tg.sent) == 2


def test_a_job_killed_by_its_timeout_mid_send_is_settled_not_sent_twice(prt):
    from rq.timeouts import JobTimeoutException

    tg = fake(prt)
    post_id = scheduled_post(prt, "Slow upload")
    tg.fail_after_next("send", JobTimeoutException("Task exceeded maximum timeout value (45 seconds)"))
    dispatch(prt)
    drain(prt, "publish")
    assert [m.html for m in tg.visible("@mychan")] == ["Slow upload"] and len(tg.sent) == 1
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and json.loads(post["message_ids"]) == [tg.sent[0].message_id]
    assert publish_job(prt, post_id)["attempts"] == 2


def test_an_outbox_write_failing_on_the_last_attempt_fails_the_post(prt, home, monkeypatch):
    import contentq.publish.drivers as drivers

    write_config(home, route_toml(extra='publisher = "outbox"'))
    post_id = scheduled_post(prt, "To the outbox")

    def broken(*args: object, **kw: object) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(drivers, "write_outbox", broken)
    with pytest.raises(FatalJobError):
        publish_post(prt, post_id)
    post = get_post(prt.store, post_id)
    assert post["state"] == "failed" and "No space left on device" in post["state_reason"]
    (note,) = notifications(prt, f"publish-failed:{post_id}")
    assert "outbox" in note["message"]


# -- media kinds (issue 29) ------------------------------------------------------------------------------


def import_media_kinds(rt: Runtime, tmp_path: Path) -> None:
    """tests/test_export.py's export of every media kind imported into @donor and rewritten (`rewriter = "none"`)."""
    from contentq.intake.collect import ForegroundContext
    from contentq.intake.imports import import_export
    from tests.test_export import media_export

    import_export(ForegroundContext(rt), media_export(tmp_path / "export"), "@donor")
    drain(rt, "rewrite")


def test_every_media_kind_is_sent_as_what_it_is_with_its_attributes(prt, tmp_path):
    tg = fake(prt)
    import_media_kinds(prt, tmp_path)
    dispatch(prt)
    drain(prt, "publish")
    sent = {m.kind: m for m in tg.visible("@mychan")}
    assert sorted(sent) == ["animation", "audio", "document", "photo", "sticker", "video", "video_note", "voice"]
    items = {kind: m.item for kind, m in sent.items()}
    assert all(item is not None for item in items.values())
    assert items["sticker"].emoji == "😂" and items["sticker"].mime == "image/webp"  # type: ignore[union-attr]
    assert (items["video_note"].duration, items["video_note"].width) == (12, 384)  # type: ignore[union-attr]
    assert items["voice"].duration == 7 and sent["voice"].html == "Голосовое"  # type: ignore[union-attr]
    assert sent["animation"].html == "Гифка" and items["animation"].duration == 3  # type: ignore[union-attr]
    audio = items["audio"]
    assert audio is not None and (audio.title, audio.performer, audio.duration, audio.name) == (
        "Группа крови", "Кино", 285, "song.mp3")  # fmt: skip
    video = items["video"]
    assert video is not None and (video.width, video.height, video.duration) == (1280, 720, 95)
    assert items["photo"].spoiler is True and sent["photo"].html == "Спойлер"  # type: ignore[union-attr]
    assert items["document"].name == "Отчёт 2024.pdf"  # type: ignore[union-attr]
    assert not any("Платный пост" in m.html for m in tg.visible("@mychan"))  # paid media: not reposted
    paid = prt.store.one("SELECT * FROM posts WHERE source_msg_id = 8")
    assert paid["state"] == "filtered" and "paid media" in paid["state_reason"]


def test_a_sticker_with_text_goes_as_the_sticker_then_the_text(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt, "Подпись канала", kind="sticker")
    add_media(prt, post_id, "sticker")
    dispatch(prt)
    drain(prt, "publish")
    sticker, text = tg.visible("@mychan")
    assert (sticker.kind, sticker.html) == ("sticker", "") and (text.kind, text.html) == (None, "Подпись канала")
    job = publish_job(prt, post_id)
    moved = [e for e in job_events(prt.store, job["id"]) if e["event"] == "caption_moved"]
    assert moved and moved[0]["message"].startswith("a sticker carries no caption")


def test_media_that_cannot_share_an_album_go_as_messages_of_their_own_in_order(prt):
    tg = fake(prt)
    post_id = scheduled_post(prt, "Подборка", kind="album")
    for position, kind in enumerate(["photo", "video", "voice", "photo", "animation", "video_note"]):
        add_media(prt, post_id, kind, position=position)
    dispatch(prt)
    drain(prt, "publish")
    assert sends_calls(tg) == [("@mychan", "album"), ("@mychan", "media"), ("@mychan", "media"), ("@mychan", "media"),
                               ("@mychan", "media")]  # fmt: skip
    visible = tg.visible("@mychan")
    assert [m.kind for m in visible] == ["photo", "video", "voice", "photo", "animation", "video_note"]
    assert visible[0].html == "Подборка" and all(m.html == "" for m in visible[1:])
    assert get_post(prt.store, post_id)["state"] == "published"


def test_the_outbox_and_its_preview_show_each_media_kind(prt, home, tmp_path):
    write_config(home, route_toml(extra='publisher = "outbox"'))
    fake(prt)
    import_media_kinds(prt, tmp_path)
    dispatch(prt)
    drain(prt, "publish")
    folders = {}
    for post in prt.store.query("SELECT * FROM posts WHERE state = 'published'"):
        folders[post["source_msg_id"]] = prt.settings.outbox_dir / "news" / str(post["id"])
    meta = {i: json.loads((f / "meta.json").read_text()) for i, f in folders.items()}
    assert meta[1]["media"][0]["kind"] == "sticker" and meta[1]["media"][0]["emoji"] == "😂"
    assert meta[2]["media"][0]["kind"] == "video_note" and meta[2]["media"][0]["duration"] == 12
    assert meta[7]["media"][0]["spoiler"] is True and meta[6]["media"][0]["spoiler"] is False
    pages = {i: (f / "post.html").read_text() for i, f in folders.items()}
    assert 'data-kind="sticker"' in pages[1] and "sticker 😂" in pages[1]
    assert "round video · 0:12" in pages[2] and 'class="tg-round"' in pages[2]
    assert "🎤 voice message · 0:07" in pages[3]
    assert "GIF · 0:03" in pages[4] and "autoplay loop muted" in pages[4]
    assert "🎵 Кино — Группа крови · 4:45" in pages[5]
    spoiler = 'class="tg-spoiler tg-media-spoiler"'
    assert spoiler in pages[7] and spoiler not in pages[6]


def test_a_mention_by_name_from_an_export_is_sent_as_a_mention(prt, tmp_path):
    from contentq.intake.collect import ForegroundContext
    from contentq.intake.imports import import_export
    from tests.test_export import write_export

    tg = fake(prt)
    text = ["Спасибо ", {"type": "mention_name", "text": "Павлу", "user_id": 42}, " за помощь"]
    import_export(ForegroundContext(prt), write_export(tmp_path / "e", [{"id": 1, "text": text}]), "@donor")
    drain(prt, "rewrite")
    dispatch(prt)
    drain(prt, "publish")
    (sent,) = tg.visible("@mychan")
    assert sent.html == 'Спасибо <a href="tg://user?id=42">Павлу</a> за помощь' and sent.mentions == [42]


def test_a_dry_run_never_overwrites_what_the_outbox_publisher_published(prt, home):
    write_config(home, route_toml(extra='publisher = "outbox"'))
    fake(prt)
    post_id = scheduled_post(prt, "As <b>published</b>")
    dispatch(prt)
    drain(prt, "publish")
    folder = prt.settings.outbox_dir / "news" / str(post_id)
    published = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert json.loads(published["meta.json"])["dry_run"] is False
    prt.store.execute("UPDATE posts SET rewrite_html = 'Edited <i>afterwards</i>' WHERE id = ?", (post_id,))

    result = CliRunner().invoke(app, ["publish", str(post_id), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == published  # untouched
    beside = folder.with_name(f"{post_id}.dry-run")
    assert str(beside) in result.output.replace("\n", "")
    meta = json.loads((beside / "meta.json").read_text())
    assert meta["dry_run"] is True and "afterwards" in meta["html"]
    # A second dry run replaces the first one, still beside the published folder.
    assert CliRunner().invoke(app, ["publish", str(post_id), "--dry-run"]).exit_code == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == published
