"""`contentq listen` against the scripted Telegram's live updates, with real Valkey and SQLite.

The listener runs in a thread with its own Runtime (its own SQLite connection, as its own process would);
the test thread plays cron `collect` and the workers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest

import contentq.intake.collect
import contentq.intake.listen
from contentq.clock import iso
from contentq.intake.listen import Listener, ListenService
from contentq.integrations.telegram.gateway import MediaInfo
from contentq.ops.doctor import FAIL, OK, WARN, run_health
from contentq.ops.listening import check_listeners
from contentq.ops.probe import Probe
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.settings import Settings, load_settings
from tests.conftest import drain, wait_for
from tests.fake_telegram import FakeTelegram

ROUTES = """
[routes.news]
target = "@mine"
sources = ["@donor_a"]
rewriter = "clean"
on_donor_edit = "{edit}"
on_donor_delete = "{delete}"
"""


@pytest.fixture
def tg(rt) -> FakeTelegram:
    fake = FakeTelegram()
    fake.add_channel("@donor_a")
    fake.add_channel("@mine")
    rt.services["telegram"] = fake
    rt.settings.publish_min_interval = 0
    return fake


def configure(rt: Runtime, edit: str = "rewrite", delete: str = "cancel") -> None:
    (rt.settings.home / "contentq.toml").write_text(ROUTES.format(edit=edit, delete=delete))


@pytest.fixture
def listen(rt, tg) -> Iterator[Callable[..., Listener]]:
    running: list[tuple[Listener, threading.Thread, Runtime]] = []

    def start(**options: object) -> Listener:
        if not (rt.settings.home / "contentq.toml").exists():
            configure(rt)
        own = Runtime(rt.settings)
        own.services["telegram"] = tg
        listener = Listener(own, ["@donor_a"], tick=0.05, **options)  # type: ignore[arg-type]
        thread = threading.Thread(target=listener.run, daemon=True)
        thread.start()
        running.append((listener, thread, own))
        wait_for(lambda: listener.connected, what="the listener connected and caught up")
        return listener

    yield start
    for listener, thread, own in running:
        listener.stop()
        tg.stop_listening()
        thread.join(10)
        own.services.pop("telegram", None)
        own.close()


def posts(rt) -> list[dict]:
    return rt.store.query("SELECT * FROM posts ORDER BY id")


def settled(rt, count: int) -> list[dict]:
    """Wait until `count` posts exist, and each collected one has its rewrite job: the lifecycle enqueues it as the
    move's follow-up, just after the post's insert is committed."""
    wait_for(lambda: len(posts(rt)) >= count, what=f"{count} posts")
    wait_for(lambda: all(rewrite_jobs(rt, p["id"]) for p in posts(rt) if p["state"] == "collected"),
             what="the rewrite job of every collected post")  # fmt: skip
    return posts(rt)


def rewrite_jobs(rt, post_id: int) -> int:
    return int(rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'rewrite' AND key = ?", (str(post_id),)))


def each_message_once(rt) -> list[int]:
    ids = [i for p in posts(rt) for i in json.loads(p["source_msg_ids"])]
    assert len(ids) == len(set(ids)), f"a message stored twice: {sorted(ids)}"
    return sorted(ids)


def test_a_live_message_is_collected_through_the_ingest_path_and_rewritten(rt, tg, listen):
    listener = listen()
    tg.inject_message("@donor_a", 1, "<b>Rates</b> go up today")
    [post] = settled(rt, 1)
    assert post["state"] == "collected" and post["text_html"] == "<b>Rates</b> go up today"
    assert rt.store.one("SELECT last_message_id FROM channels WHERE ref = '@donor_a'")["last_message_id"] == 1
    drain(rt, "rewrite")
    assert rt.store.one("SELECT state FROM posts WHERE id = ?", (post["id"],))["state"] in ("scheduled", "published")
    assert listener.counts.collected == 1


def test_an_album_arriving_as_ten_separate_updates_is_one_post(rt, tg, listen):
    listen()
    tg.inject_album("@donor_a", list(range(11, 21)), "Ten photos of the launch", separate=True)
    [post] = settled(rt, 1)
    assert json.loads(post["source_msg_ids"]) == list(range(11, 21))
    assert post["kind"] == "album" and post["text_html"] == "Ten photos of the launch"
    assert rt.store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ?", (post["id"],)) == 10
    assert rewrite_jobs(rt, post["id"]) == 1
    tg.inject_message("@donor_a", 21, "after the album")
    assert len(settled(rt, 2)) == 2


def test_a_disconnect_loses_none_and_doubles_none(rt, tg, listen):
    listener = listen()
    tg.inject_message("@donor_a", 1, "before the drop one")
    tg.inject_message("@donor_a", 2, "before the drop two")
    settled(rt, 2)
    tg.drop_connection()
    wait_for(lambda: not listener.connected, what="the listener saw the drop")
    for i in range(3, 8):  # five messages while the live stream is down: not delivered live
        tg.inject_message("@donor_a", i, f"while down number {i}")
    assert len(posts(rt)) == 2
    tg.restore_connection()
    settled(rt, 7)
    for i in range(3, 8):  # Telegram may deliver in-flight updates after the reconnect as well
        tg._push("@donor_a", "new", [m for m in tg.messages["@donor_a"] if m.id == i])
    tg.inject_message("@donor_a", 8, "after the reconnect")
    settled(rt, 8)
    wait_for(lambda: listener.counts.already_stored >= 5, what="the redelivered updates seen")
    assert each_message_once(rt) == list(range(1, 9))
    assert all(rewrite_jobs(rt, p["id"]) == 1 for p in posts(rt))
    row = rt.store.one("SELECT * FROM listeners WHERE name = 'listen'")
    assert row["state"] == "connected" and row["reconnects"] == 1


def test_listen_and_cron_collect_at_once_store_each_message_once(rt, tg, listen):
    listen()
    for i in range(1, 41):
        tg.inject_message("@donor_a", i, f"story number {i} about things")
    for _ in range(3):  # cron collect runs while the listener works through the same messages
        enqueue(rt, "collect", "@donor_a", {"source": "@donor_a"})
        drain(rt, "collect")
    settled(rt, 40)
    wait_for(lambda: rt.store.scalar("SELECT last_message_id FROM channels WHERE ref = '@donor_a'") == 40,
             what="the cursor at 40")  # fmt: skip
    # Collect from a stale cursor (it read the cursor before the listener stored): nothing stored twice.
    rt.store.execute("UPDATE channels SET last_message_id = 0 WHERE ref = '@donor_a'")
    enqueue(rt, "collect", "@donor_a", {"source": "@donor_a"})
    drain(rt, "collect")
    tg.inject_message("@donor_a", 41, "one more")
    settled(rt, 41)
    assert each_message_once(rt) == list(range(1, 42))
    assert all(rewrite_jobs(rt, p["id"]) == 1 for p in posts(rt))


def cursor(rt) -> int:
    return int(rt.store.scalar("SELECT last_message_id FROM channels WHERE ref = '@donor_a'"))


PHOTO = MediaInfo("photo", "image/jpeg", 1000, 800, 600)


def test_a_message_whose_media_download_failed_is_taken_by_the_catch_up_not_skipped(rt, tg, listen):
    listener = listen(hold_retry=3600)  # the listener does not retry itself here: the reconnect must take it
    tg.fail_next("download_media", ConnectionError("reset while downloading"))
    tg.inject_message("@donor_a", 1, "a photo of the launch", media=PHOTO)
    tg.inject_message("@donor_a", 2, "text after it")
    settled(rt, 1)
    wait_for(lambda: listener.counts.collected == 1, what="message 2 stored")
    assert cursor(rt) == 0  # the cursor stays before message 1, which is not stored
    tg.drop_connection()
    wait_for(lambda: not listener.connected, what="the listener saw the drop")
    tg.restore_connection()
    settled(rt, 2)
    wait_for(lambda: cursor(rt) == 2, what="the cursor at 2")
    assert each_message_once(rt) == [1, 2]
    photo = next(p for p in posts(rt) if json.loads(p["source_msg_ids"]) == [1])
    assert rt.store.scalar("SELECT COUNT(*) FROM media WHERE post_id = ? AND path IS NOT NULL", (photo["id"],)) == 1
    tg.inject_message("@donor_a", 3, "the cursor moves again")
    wait_for(lambda: cursor(rt) == 3, what="the cursor at 3")
    assert each_message_once(rt) == [1, 2, 3]
    assert all(rewrite_jobs(rt, p["id"]) == 1 for p in posts(rt))


def test_the_listener_retries_a_failed_download_itself_without_a_reconnect(rt, tg, listen):
    listen(hold_retry=0.2)
    tg.fail_next("download_media", ConnectionError("reset while downloading"))
    tg.inject_message("@donor_a", 1, "a photo of the launch", media=PHOTO)
    tg.inject_message("@donor_a", 2, "text after it")
    settled(rt, 2)
    wait_for(lambda: cursor(rt) == 2, what="the cursor at 2")
    assert each_message_once(rt) == [1, 2]


def test_a_backlog_beyond_the_catch_up_is_not_skipped_by_live_messages(rt, tg, listen, monkeypatch):
    monkeypatch.setattr(contentq.intake.collect, "MAX_PER_RUN", 5)
    monkeypatch.setattr(contentq.intake.listen, "MAX_PER_RUN", 5)
    monkeypatch.setattr(contentq.intake.listen, "CATCH_UP_PAGES", 2)
    listener = listen(hold_retry=3600)  # cron collect takes the rest of the backlog here
    tg.inject_message("@donor_a", 1, "story number 1 about things")
    settled(rt, 1)
    tg.drop_connection()
    wait_for(lambda: not listener.connected, what="the listener saw the drop")
    for i in range(2, 31):  # 29 messages while down: the catch-up takes 2 pages of 5
        tg.inject_message("@donor_a", i, f"story number {i} about things")
    tg.restore_connection()
    wait_for(lambda: listener.connected, what="caught up")
    assert cursor(rt) == 11
    tg.inject_message("@donor_a", 31, "story number 31 about things")
    tg.inject_message("@donor_a", 32, "story number 32 about things")
    settled(rt, 13)
    assert cursor(rt) == 11  # not past the backlog 12..30
    for _ in range(6):  # cron collect, one page a run
        enqueue(rt, "collect", "@donor_a", {"source": "@donor_a"})
        drain(rt, "collect")
    assert cursor(rt) == 32
    tg.inject_message("@donor_a", 33, "story number 33 about things")
    wait_for(lambda: cursor(rt) == 33, what="the cursor moving with live messages again")
    assert each_message_once(rt) == list(range(1, 34))
    # The cursor moves with the post's insert; its rewrite job is enqueued just after: wait for it, then none more.
    wait_for(lambda: all(rewrite_jobs(rt, p["id"]) >= 1 for p in posts(rt)), what="every post's rewrite job")
    assert all(rewrite_jobs(rt, p["id"]) == 1 for p in posts(rt))


def test_an_edit_before_the_rewrite_updates_the_post_that_is_then_rewritten(rt, tg, listen):
    listen()
    tg.inject_message("@donor_a", 1, "Rates go up by 1%")
    [post] = settled(rt, 1)
    tg.inject_edit("@donor_a", 1, "Rates go up by 2%")
    wait_for(lambda: posts(rt)[0]["text_html"] == "Rates go up by 2%", what="the edit applied")
    drain(rt, "rewrite", "publish")
    done = posts(rt)[0]
    assert done["state"] == "published" and "2%" in done["rewrite_html"]
    assert [m.html for m in tg.visible("@mine")] == [done["rewrite_html"]]


def test_an_edit_after_the_rewrite_rewrites_again_before_publishing(rt, tg, listen):
    configure(rt)
    (rt.settings.home / "contentq.toml").write_text(
        (rt.settings.home / "contentq.toml").read_text() + "approval = true\n"
    )
    listen()
    tg.inject_message("@donor_a", 1, "Rates go up by 1%")
    settled(rt, 1)
    drain(rt, "rewrite")
    assert posts(rt)[0]["state"] == "awaiting_approval" and "1%" in posts(rt)[0]["rewrite_html"]
    tg.inject_edit("@donor_a", 1, "Rates go up by 3%")
    wait_for(lambda: posts(rt)[0]["state"] == "collected", what="the post sent back to rewrite")
    assert "rewritten again" in posts(rt)[0]["state_reason"]
    drain(rt, "rewrite")
    post = posts(rt)[0]
    assert post["state"] == "awaiting_approval" and "3%" in post["rewrite_html"]
    assert rewrite_jobs(rt, post["id"]) == 2


def test_an_edit_after_publishing_edits_our_message_once(rt, tg, listen):
    configure(rt, edit="edit_published")
    listen()
    tg.inject_message("@donor_a", 1, "Rates go up by 1%")
    settled(rt, 1)
    drain(rt, "rewrite", "publish")
    assert posts(rt)[0]["state"] == "published"
    [ours] = tg.visible("@mine")
    tg.fail_after_next("edit_message", ConnectionError("reply lost"))  # the edit lands, its answer does not
    tg.inject_edit("@donor_a", 1, "Rates go up by 4%")
    wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM post_edits"), what="the edit recorded")
    tg.inject_edit("@donor_a", 1, "Rates go up by 4%")  # the same edit delivered twice
    drain(rt, "publish")
    assert tg.visible("@mine")[0].message_id == ours.message_id and "4%" in tg.visible("@mine")[0].html
    assert len(tg.edits) == 1
    [edit] = rt.store.query("SELECT * FROM post_edits")
    assert edit["status"] == "edited" and json.loads(edit["message_ids"]) == [ours.message_id]


def test_an_edit_after_publishing_is_left_alone_by_default_and_outside_the_48h_window(rt, tg, listen):
    configure(rt, edit="edit_published")
    listen()
    tg.inject_message("@donor_a", 1, "Rates go up by 1%")
    settled(rt, 1)
    drain(rt, "rewrite", "publish")
    rt.store.execute("UPDATE posts SET published_at = '2000-01-01T00:00:00.000+00:00'")
    tg.inject_edit("@donor_a", 1, "Rates go up by 5%")
    wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM post_edits"), what="the edit recorded")
    drain(rt, "publish")
    assert tg.edits == []
    assert "48 h" in rt.store.scalar("SELECT reason FROM post_edits")


def test_a_deletion_before_publishing_cancels_the_post_with_the_reason(rt, tg, listen):
    listen()
    tg.inject_message("@donor_a", 1, "soon deleted")
    tg.inject_message("@donor_a", 2, "kept")
    settled(rt, 2)
    tg.inject_delete("@donor_a", [1])
    wait_for(lambda: posts(rt)[0]["state"] == "cancelled", what="the post cancelled")
    assert "deleted by the donor" in posts(rt)[0]["state_reason"]
    drain(rt, "rewrite", "publish")
    assert [m.html for m in tg.visible("@mine")] == [posts(rt)[1]["rewrite_html"]]


def test_a_deletion_after_publishing_deletes_ours_only_with_delete_published(rt, tg, listen):
    configure(rt, delete="delete_published")
    listen()
    tg.inject_message("@donor_a", 1, "published then deleted")
    settled(rt, 1)
    drain(rt, "rewrite", "publish")
    assert len(tg.visible("@mine")) == 1
    tg.inject_delete("@donor_a", [1])
    wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'donor_change'"), what="the job")
    drain(rt, "publish")
    assert tg.visible("@mine") == [] and posts(rt)[0]["state"] == "cancelled"


def test_health_knows_the_listener_and_the_admin_is_told_of_a_long_disconnect(rt, tg, listen):
    rt.settings.listen_alert_after = 0
    listener = listen()
    tg.inject_message("@donor_a", 1, "hello")
    settled(rt, 1)
    wait_for(lambda: rt.store.scalar("SELECT updates FROM listeners"), what="the update counted")
    [probe] = check_listeners(rt.settings)
    assert probe.status == OK and "1 update(s)" in probe.detail and "behind the donor" in probe.detail
    tg.drop_connection("network unreachable")
    wait_for(lambda: rt.store.scalar("SELECT COUNT(*) FROM notifications WHERE key = 'listen-disconnected:listen'"),
             what="the admin told")  # fmt: skip
    [probe] = check_listeners(rt.settings)
    assert probe.status == FAIL and "network unreachable" in probe.detail
    tg.restore_connection()
    wait_for(lambda: listener.connected, what="reconnected")
    stale = iso().replace(iso()[:4], "2000")
    rt.store.execute("UPDATE listeners SET heartbeat_at = ?", (stale,))
    [probe] = check_listeners(rt.settings)
    assert probe.status == FAIL and "not running" in probe.detail


def test_telethon_events_become_updates_of_the_listened_channels_only():
    from datetime import UTC, datetime

    from telethon.tl import types as tl

    from contentq.integrations.telegram.client import marked_id, to_update
    from contentq.integrations.telegram.gateway import ResolvedChannel

    donor = ResolvedChannel("@donor_a", 1234, access_hash=99)
    wanted = {marked_id(donor): donor.id}
    assert marked_id(donor) == -1000000001234  # Telethon's marked channel id
    text = tl.Message(id=7, peer_id=tl.PeerChannel(1234), date=datetime.now(UTC), message="hello", grouped_id=None)
    update = to_update("new", -1000000001234, [text], wanted)
    assert update is not None and update.channel_id == 1234 and update.messages[0].html == "hello"
    assert to_update("new", -1000000009999, [text], wanted) is None  # another chat
    service = tl.MessageService(id=8, peer_id=tl.PeerChannel(1234), date=datetime.now(UTC),
                                action=tl.MessageActionChatEditTitle("x"))  # fmt: skip
    assert to_update("new", -1000000001234, [service], wanted) is None


# the program under supervisor: never a crash loop ----------------------------------------------------------


def _listener_probe(rt: Runtime) -> Probe:
    found = [p for p in check_listeners(rt.settings) if p.check == "listener listen"]
    return found[0] if found else Probe("listener listen", "none", "no row yet")


def test_the_listener_waits_for_a_login_then_starts_by_itself_without_exiting(rt, tg, monkeypatch):
    configure(rt)
    home = rt.settings.home
    monkeypatch.chdir(home)
    tg.authorized = False  # a session file that Telegram no longer accepts comes second

    def fresh() -> Settings:
        # The settings a restart would read: .env is read anew each time.
        return load_settings(home=home, worker_heartbeat_ttl=3, listen_heartbeat=1)

    def with_fake(settings: Settings) -> Runtime:
        own = Runtime(settings)
        own.services["telegram"] = tg
        return own

    service = ListenService(fresh, lambda own: ["@donor_a"], first_wait=0.5, max_wait=2, make_runtime=with_fake)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        # 1. No API keys: the state says so, with the fix, and health shows a warning (not a failure).
        wait_for(lambda: _listener_probe(rt).status == WARN, what="the listener waiting for a login")
        probe = _listener_probe(rt)
        assert probe.detail.startswith("not logged in: CONTENTQ_TG_API_ID") and "contentq login" in probe.fix
        health = {p.check: p for p in run_health(rt.settings, workers=False)}
        assert health["listener listen"].status == WARN and "not logged in" in health["listener listen"].detail
        assert thread.is_alive()

        # 2. Keys and a session file that Telegram refuses: still waiting, now with Telegram's reason.
        (home / ".env").write_text("CONTENTQ_TG_API_ID=12345\nCONTENTQ_TG_API_HASH=0123456789abcdef\n")
        rt.settings.session_path.write_text("1AAAA-not-a-real-session\n")
        wait_for(lambda: "not authorized" in _listener_probe(rt).detail, 20, what="the refused session shown")
        assert _listener_probe(rt).status == WARN and thread.is_alive()

        # 3. The login goes through: the listener connects by itself, in the same process.
        tg.authorized = True
        rt.settings.session_path.write_text("1AAAA-a-fresh-login\n")
        wait_for(lambda: _listener_probe(rt).status == OK, 20, what="the listener connected after the login")
        tg.inject_message("@donor_a", 7, "live after the login")
        wait_for(lambda: len(posts(rt)) == 1, what="a live post after the login")
    finally:
        service.stop()
        tg.stop_listening()
        thread.join(10)
    assert not thread.is_alive()
    assert _listener_probe(rt).detail.startswith("stopped")
