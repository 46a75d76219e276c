"""The admin bot end to end on a scripted Telegram (tests/fake_bot.py): approval cards as the post will be
published, every button, the prompts, signed callbacks, non-admins, double presses, restarts, alerts, commands."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from telethon import errors
from typer.testing import CliRunner

from contentq import actors, lifecycle
from contentq.bot import cards
from contentq.bot.core import CARDS_PER_TICK, AdminBot
from contentq.bot.serve import serve
from contentq.bot.signing import Callback, ForgedCallback, Signer, key_path, load_key
from contentq.cli.app import app
from contentq.clock import iso, now, parse
from contentq.errors import ConfigError, ContentqError
from contentq.flow import pipeline
from contentq.intake.collect import ForegroundContext
from contentq.intake.imports import import_export
from contentq.integrations.telegram.bot_gateway import CALLBACK_DATA_MAX, IncomingMessage
from contentq.ops.doctor import check_bot
from contentq.ops.purge import purge
from contentq.ops.supervisor import render as render_supervisor
from contentq.review import posts
from contentq.runtime import queues
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import load_settings
from contentq.store import bot as records
from contentq.store.jobs import get_job
from contentq.store.posts import get_post
from tests.conftest import REPO, drain, subprocess_env, wait_for
from tests.fake_bot import ChatMessage, FakeBot
from tests.publish_helpers import add_post, route_toml, write_config
from tests.web_helpers import LONG_CAPTION, album_post, failed_job

ADMIN, SECOND_ADMIN, STRANGER = 111, 222, 999
GROUP = -100500
ASSETS = REPO / "tests" / "assets"


@pytest.fixture
def brt(home: Path) -> Iterator[Runtime]:
    """A runtime with the bot configured: two admins, cards in their private chats."""
    settings = load_settings(home=home, bot_token="123456:test-token-value", bot_admins=f"{ADMIN},{SECOND_ADMIN}")
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


@pytest.fixture
def tg() -> FakeBot:
    tg = FakeBot()
    tg.start()
    return tg


def awaiting(rt: Runtime, html: str = "Rewritten <b>news</b> of the day", extra: str = "") -> int:
    write_config(rt.settings.home, route_toml(extra=f"approval = true\n{extra}", schedule='slots = ["09:00", "18:00"]'))
    post_id = add_post(rt, html)
    assert pipeline.on_rewritten(rt, post_id) == "awaiting_approval"
    return post_id


def pump(bot: AdminBot, tg: FakeBot) -> None:
    """What the serve loop does: handle what arrived, then the periodic work."""
    for event in tg.drain():
        bot.handle(event)
    bot.tick()


def control(tg: FakeBot, chat: int = ADMIN) -> ChatMessage:
    (message,) = [m for m in tg.with_buttons(chat) if "awaiting approval" in m.html]
    return message


def history(rt: Runtime, post_id: int) -> list[dict[str, object]]:
    return posts.post_details(rt, post_id).history


# -- the card ---------------------------------------------------------------------------------------------


def test_a_post_awaiting_approval_arrives_as_a_card_and_approve_schedules_it(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    for chat in (ADMIN, SECOND_ADMIN):  # each admin's private chat
        first, card = tg.visible(chat)
        assert first.html == "Rewritten <b>news</b> of the day"  # the post as it will be published
        assert card.reply_to == first.id and f"Post {post_id}" in card.html
        labels = [b.text for row in card.buttons for b in row]
        assert labels == ["✅ Approve", "🚀 Publish now", "🕒 Reschedule", "✖️ Reject", "✏️ Edit", "🔁 Rewrite again"]
    pump(bot, tg)
    assert len(tg.visible(ADMIN)) == 2  # a tick later: no second card

    press = tg.press(ADMIN, ADMIN, control(tg).id, "Approve")
    pump(bot, tg)
    post = get_post(brt.store, post_id)
    assert post["state"] == "scheduled" and post["scheduled_at"]
    last = history(brt, post_id)[-1]
    assert (last["event"], last["actor"]) == ("approved", f"bot:{ADMIN}")
    text, alert = tg.answer_to(press)
    assert text.startswith("Approved:") and not alert
    for chat in (ADMIN, SECOND_ADMIN):  # both cards show the outcome, without buttons
        card = tg.visible(chat)[-1]
        assert card.buttons == [] and "approved" in card.html and f"bot:{ADMIN}" in card.html
        assert "slot:" in card.html


def test_album_and_long_post_cards_are_sent_as_they_will_be_published(brt, tg):
    album = album_post(brt)  # 5 photos and a caption over 1024 characters
    long_post = add_post(brt, "word " * 1200)  # 6000 characters: two messages
    pipeline.on_rewritten(brt, long_post)
    AdminBot(brt, tg).tick()
    shown = [(m.html, m.media, m.grouped) for m in tg.visible(ADMIN) if not m.buttons]
    album_items = [m for m in tg.visible(ADMIN) if m.grouped]
    assert len(album_items) == 5 and all(m.media == ["photo"] for m in album_items)  # one album
    expected = []
    for post_id in (album, long_post):
        parts, _ = cards.parts_of(brt, get_post(brt.store, post_id))  # what publishing sends
        for part in parts:
            if part.media:
                expected += [(part.html if i == 0 else "", [m.kind], len(part.media) > 1)
                             for i, m in enumerate(part.media)]  # fmt: skip
            else:
                expected.append((part.html, [], False))
    assert shown == expected
    assert any(html.startswith(LONG_CAPTION.strip()[:40]) for html, media, _ in shown if not media)  # caption moved
    assert len([h for h, _, _ in shown if h.startswith("word")]) == 2
    row = brt.store.one("SELECT * FROM bot_cards WHERE post_id = ? AND chat_id = ?", (album, ADMIN))
    assert len(records.part_ids(row)) == 6 and row["status"] == "open"


def test_reject_asks_for_a_reason_and_rejects_with_it(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    tg.press(ADMIN, ADMIN, control(tg).id, "Reject")
    pump(bot, tg)
    question = tg.visible(ADMIN)[-1]
    assert question.force_reply and "reason" in question.html
    assert get_post(brt.store, post_id)["state"] == "awaiting_approval"  # nothing yet
    tg.say(ADMIN, ADMIN, "off topic for this channel", reply_to=question.id)
    pump(bot, tg)
    post = get_post(brt.store, post_id)
    assert post["state"] == "rejected" and post["state_reason"] == "off topic for this channel"
    assert history(brt, post_id)[-1]["actor"] == f"bot:{ADMIN}"
    card = [m for m in tg.visible(ADMIN) if f"Post {post_id}" in m.html][0]
    assert "rejected" in card.html and "off topic" in card.html and card.buttons == []
    answer = next(m for m in tg.chats[ADMIN] if not m.from_bot and m.reply_to == question.id)
    tg.redeliver(IncomingMessage(ADMIN, ADMIN, answer.id, answer.html, answer.html, reply_to=question.id))
    before = len(tg.visible(ADMIN))
    pump(bot, tg)
    assert len(tg.visible(ADMIN)) == before  # the same message handed over again: handled once, silently
    tg.say(ADMIN, ADMIN, "again", reply_to=question.id)  # the same question answered twice
    pump(bot, tg)
    assert "answered already" in tg.visible(ADMIN)[-1].html


def test_edit_replaces_the_text_validated_as_posts_edit_and_refreshes_the_card(brt, tg):
    post_id = awaiting(brt, extra='long_text = "truncate"')
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    old_first = tg.visible(ADMIN)[0]
    tg.press(ADMIN, ADMIN, control(tg).id, "Edit")
    pump(bot, tg)
    question = tg.visible(ADMIN)[-1]
    assert question.force_reply
    tg.say(ADMIN, ADMIN, "x" * 5000, reply_to=question.id)  # over 4096 with long_text = "truncate": refused
    pump(bot, tg)
    refusal = tg.visible(ADMIN)[-1].html
    assert "Not saved" in refusal and "truncate" in refusal
    assert get_post(brt.store, post_id)["rewrite_html"] == "Rewritten <b>news</b> of the day"
    tg.say(ADMIN, ADMIN, "New text", html="<b>New</b> text", reply_to=question.id)  # answered again
    pump(bot, tg)
    post = get_post(brt.store, post_id)
    assert post["rewrite_html"] == "<b>New</b> text" and post["state"] == "awaiting_approval"
    assert tg.message(ADMIN, old_first.id).deleted  # the card was sent anew
    assert [m.html for m in tg.visible(ADMIN) if not m.buttons and not m.reply_to] == ["<b>New</b> text"]
    tg.press(ADMIN, ADMIN, control(tg).id, "Approve")  # the new card's buttons work
    pump(bot, tg)
    assert get_post(brt.store, post_id)["state"] == "scheduled"


def test_reschedule_choices(brt, tg):
    post_id = awaiting(brt)
    other = add_post(brt, "second")
    pipeline.on_rewritten(brt, other)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    card = next(m for m in tg.with_buttons(ADMIN) if f"Post {post_id}" in m.html)
    tg.press(ADMIN, ADMIN, card.id, "Reschedule")
    pump(bot, tg)
    assert [b.text for row in card.buttons for b in row] == ["+1 h", "Tomorrow, first slot", "Pick a slot…", "« Back"]
    tg.press(ADMIN, ADMIN, card.id, "+1 h")
    pump(bot, tg)
    slot = parse(get_post(brt.store, post_id)["scheduled_at"])
    assert timedelta(minutes=59) < slot - now() <= timedelta(minutes=61)
    assert history(brt, post_id)[-1]["event"] == "rescheduled"

    card = next(m for m in tg.with_buttons(ADMIN) if f"Post {other}" in m.html)
    tg.press(ADMIN, ADMIN, card.id, "Reschedule")
    pump(bot, tg)
    tg.press(ADMIN, ADMIN, card.id, "Pick a slot")
    pump(bot, tg)
    choices = [b for row in card.buttons for b in row if b.text != "« Back"]
    assert len(choices) == cards.SLOT_CHOICES
    tg.press(ADMIN, ADMIN, card.id, choices[2].text)
    pump(bot, tg)
    chosen = parse(get_post(brt.store, other)["scheduled_at"])
    assert chosen.strftime("%H:%M") in ("09:00", "18:00") and chosen > now() + timedelta(hours=12)


def test_tomorrows_first_slot_and_publish_now_and_rewrite_again(brt, tg):
    first = awaiting(brt)
    second, third = add_post(brt, "two"), add_post(brt, "three")
    for post_id in (second, third):
        pipeline.on_rewritten(brt, post_id)
    bot = AdminBot(brt, tg)
    pump(bot, tg)

    def card_of(post_id: int) -> ChatMessage:
        return next(m for m in tg.with_buttons(ADMIN) if f"Post {post_id}" in m.html)

    message = card_of(first)
    tg.press(ADMIN, ADMIN, message.id, "Reschedule")
    pump(bot, tg)
    tg.press(ADMIN, ADMIN, message.id, "Tomorrow")
    pump(bot, tg)
    slot = parse(get_post(brt.store, first)["scheduled_at"])
    assert slot.date() > now().date() and slot.strftime("%H:%M") == "09:00"

    tg.press(ADMIN, ADMIN, card_of(second).id, "Publish now")
    pump(bot, tg)
    assert get_post(brt.store, second)["state"] == "scheduled"
    assert history(brt, second)[-1]["event"] == "publish_requested"
    assert brt.store.one("SELECT status FROM jobs WHERE kind = 'publish' AND post_id = ?", (second,))

    tg.press(ADMIN, ADMIN, card_of(third).id, "Rewrite again")
    pump(bot, tg)
    assert get_post(brt.store, third)["state"] == "collected"
    assert history(brt, third)[-1]["event"] == "rewrite_again"
    assert brt.store.one("SELECT id FROM jobs WHERE kind = 'rewrite' AND post_id = ?", (third,))


def test_imported_posts_of_an_approval_route_arrive_as_cards_and_the_bot_decides(brt, tg):
    """Must show (issue 23): imported posts arrive as cards; Approve schedules, Reject with a reason rejects, Edit
    replaces the text, all in `posts show` with the bot as actor."""
    (brt.settings.home / "contentq.toml").write_text(
        '[routes.news]\ntarget = "@mine"\nsources = ["@donor_export"]\nrewriter = "none"\napproval = true\n'
        '[routes.news.schedule]\nslots = ["09:00", "18:00"]\n'
    )
    import_export(ForegroundContext(brt), ASSETS / "export_basic", "@donor_export")
    drain(brt, "rewrite", "imagegen")
    waiting = [r["post_id"] for r in records.posts_needing_cards(brt.store, ADMIN, 100)]
    assert len(waiting) >= 3
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    controls = {m.html.split("Post ")[1].split("<")[0]: m for m in tg.with_buttons(ADMIN)}
    assert sorted(int(k) for k in controls) == waiting  # one card each
    approve, reject, edit = (controls[str(p)] for p in waiting[:3])
    tg.press(ADMIN, ADMIN, approve.id, "Approve")
    tg.press(SECOND_ADMIN, SECOND_ADMIN, next(m for m in tg.with_buttons(SECOND_ADMIN) if m.html == reject.html).id,
             "Reject")  # fmt: skip
    tg.press(ADMIN, ADMIN, edit.id, "Edit")
    pump(bot, tg)
    reject_question = tg.visible(SECOND_ADMIN)[-1]
    edit_question = tg.visible(ADMIN)[-1]
    tg.say(SECOND_ADMIN, SECOND_ADMIN, "duplicate of yesterday's post", reply_to=reject_question.id)
    tg.say(ADMIN, ADMIN, "Edited by the admin", html="Edited by the <i>admin</i>", reply_to=edit_question.id)
    pump(bot, tg)

    def shown(post_id: int) -> dict[str, object]:
        result = CliRunner().invoke(app, ["posts", "show", str(post_id), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    approved, rejected, edited = (shown(p) for p in waiting[:3])
    assert approved["state"] == "scheduled"
    assert (approved["history"][-1]["event"], approved["history"][-1]["actor"]) == ("approved", f"bot:{ADMIN}")
    assert rejected["state"] == "rejected" and rejected["state_reason"] == "duplicate of yesterday's post"
    assert rejected["history"][-1]["actor"] == f"bot:{SECOND_ADMIN}"
    assert edited["rewrite_html"] == "Edited by the <i>admin</i>" and edited["state"] == "awaiting_approval"
    for post in (approved, rejected, edited):  # every move one of the table's, with its actor
        assert all(lifecycle.allowed(row) and row["actor"] for row in post["history"] if row["event"])


# -- security ---------------------------------------------------------------------------------------------


def test_a_forged_callback_changes_nothing(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    card = control(tg)
    genuine = card.button("Approve").data
    payload, _, mac = genuine.decode().rpartition("|")
    forgeries = [
        payload.replace(f"|{post_id}|", f"|{post_id + 1}|").encode() + b"|" + mac.encode(),  # another post
        genuine[:-2] + b"AA",  # the signature altered
        Signer(b"k" * 32).sign(Callback("ap", str(post_id), records.post_version(brt.store, post_id))),  # other key
        b"ap|1|1|",
        b"\xff\xfe",
    ]
    before = history(brt, post_id)
    for data in forgeries:
        press = tg.press(ADMIN, ADMIN, card.id, "", data=data)
        pump(bot, tg)
        text, alert = tg.answer_to(press)
        assert alert and "not made by this bot" in text
    assert get_post(brt.store, post_id)["state"] == "awaiting_approval"
    assert history(brt, post_id) == before


def test_a_non_admin_gets_no_answer_and_changes_nothing(home, caplog):
    settings = load_settings(home=home, bot_token="1:x-token-value", bot_admins=str(ADMIN), bot_chat=GROUP)
    rt = Runtime(settings)
    set_process_runtime(rt)
    tg = FakeBot()
    tg.start()
    try:
        post_id = awaiting(rt)
        bot = AdminBot(rt, tg)
        pump(bot, tg)
        assert tg.visible(ADMIN) == [] and len(tg.with_buttons(GROUP)) == 1  # cards go to the admin group
        caplog.set_level(logging.WARNING, logger="contentq.bot.audit")
        press = tg.press(STRANGER, GROUP, control(tg, GROUP).id, "Approve")
        tg.say(STRANGER, GROUP, "/pause publish")
        tg.say(STRANGER, STRANGER, "/status")  # privately
        sent_before = len(tg.visible(GROUP))
        pump(bot, tg)
        assert get_post(rt.store, post_id)["state"] == "awaiting_approval"
        assert not [a for a in tg.answers if a[0] == press.query_id]  # no answer at all
        assert len(tg.visible(GROUP)) == sent_before and tg.visible(STRANGER) == []
        assert "publish" not in queues.paused_queues(rt.redis)
        audit = [r.getMessage() for r in caplog.records if r.name == "contentq.bot.audit"]
        assert len(audit) == 3 and all(str(STRANGER) in line for line in audit)
        tg.say(ADMIN, -100777, "/pause publish")  # an admin, in a group that is not the admin chat
        pump(bot, tg)
        assert "publish" not in queues.paused_queues(rt.redis) and tg.visible(-100777) == []
        assert "neither CONTENTQ_BOT_CHAT" in caplog.records[-1].getMessage()
        tg.press(ADMIN, GROUP, control(tg, GROUP).id, "Approve")  # the admin in the group
        pump(bot, tg)
        assert get_post(rt.store, post_id)["state"] == "scheduled"
    finally:
        rt.close()


def test_double_press_and_a_stale_card_do_nothing_twice_and_say_why(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    card = control(tg)
    first = tg.press(ADMIN, ADMIN, card.id, "Approve")
    second = tg.press(ADMIN, ADMIN, card.id, "Approve")  # pressed twice before the first was handled
    pump(bot, tg)
    text, alert = tg.answer_to(second)
    assert alert and "out of date" in text and "scheduled" in text and f"bot:{ADMIN}" in text
    tg.redeliver(first)  # Telegram hands the first press over again
    pump(bot, tg)
    assert tg.answers[-1][1] == "This press was handled already."
    assert [h["event"] for h in history(brt, post_id)].count("approved") == 1

    # A second admin's card went stale when the first approved; their Reject does nothing.
    other = control_or_outcome = tg.visible(SECOND_ADMIN)[-1]
    assert other.buttons == [] and "approved" in control_or_outcome.html


def test_a_card_turns_into_the_outcome_when_the_post_moves_elsewhere(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    card = control(tg)
    stale = card.button("Reject").data
    with actors.acting_as("cli:alice"):
        posts.approve(brt, post_id)
    pump(bot, tg)
    assert card.buttons == [] and "cli:alice" in card.html and "approved" in card.html
    press = tg.press(ADMIN, ADMIN, card.id, "", data=stale)  # an old client still shows the buttons
    pump(bot, tg)
    text, _ = tg.answer_to(press)
    assert "out of date" in text and get_post(brt.store, post_id)["state"] == "scheduled"


# -- reliability ------------------------------------------------------------------------------------------


def run_bot(rt: Runtime, tg: FakeBot) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(rt, tg, stop), kwargs={"tick": 0.05}, daemon=True)
    thread.start()
    return thread, stop


def stop_bot(tg: FakeBot, thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    tg.close()


def test_bot_restarted_between_card_and_press(brt):
    post_id = awaiting(brt)
    tg = FakeBot()
    thread, stop = run_bot(brt, tg)
    wait_for(lambda: len(tg.with_buttons(ADMIN)) == 1, what="the card")
    stop_bot(tg, thread, stop)

    card = control(tg)
    press = tg.press(ADMIN, ADMIN, card.id, "Approve")  # while the bot is down: Telegram keeps it
    assert get_post(brt.store, post_id)["state"] == "awaiting_approval"

    thread, stop = run_bot(brt, tg)  # a new process: the signing key and the cards come from disk
    wait_for(lambda: get_post(brt.store, post_id)["state"] == "scheduled", what="the press after the restart")
    wait_for(lambda: card.buttons == [], what="the card's outcome")
    stop_bot(tg, thread, stop)
    assert tg.starts == 2 and tg.answer_to(press)[0].startswith("Approved")
    assert len([m for m in tg.visible(ADMIN) if "Post" in m.html]) == 1  # no second card after the restart
    assert history(brt, post_id)[-1]["actor"] == f"bot:{ADMIN}"


def test_disconnects_are_survived_and_a_bad_update_does_not_stop_the_bot(brt, caplog):
    post_id = awaiting(brt)
    tg = FakeBot()
    thread, stop = run_bot(brt, tg)
    wait_for(lambda: len(tg.with_buttons(ADMIN)) == 1, what="the card")
    tg.drop_connection()
    tg.fail_next("answer", errors.FloodWaitError(request=None, capture=3))  # answering the next press fails
    tg.press(ADMIN, ADMIN, control(tg).id, "Approve")
    wait_for(lambda: get_post(brt.store, post_id)["state"] == "scheduled", what="approved")
    tg.say(ADMIN, ADMIN, "/help")
    wait_for(lambda: "/pending" in tg.visible(ADMIN)[-1].html, what="the answer after the failed one")
    stop_bot(tg, thread, stop)


def test_a_card_interrupted_mid_send_is_not_sent_again_by_itself_but_on_request(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    version = records.post_version(brt.store, post_id)
    entry = records.entry_of(brt.store, post_id)
    assert records.claim_card(brt.store, post_id, ADMIN, entry, version)  # a bot died after this
    bot = AdminBot(brt, tg)
    bot.startup()
    pump(bot, tg)
    assert tg.visible(ADMIN) == []  # its messages may be in the chat: not sent by itself
    tg.say(ADMIN, ADMIN, "/pending")
    pump(bot, tg)
    listing = tg.visible(ADMIN)[-1]
    assert f"{post_id} · news" in listing.html
    tg.press(ADMIN, ADMIN, listing.id, f"Card of post {post_id}")
    pump(bot, tg)
    assert control(tg) and get_post(brt.store, post_id)["state"] == "awaiting_approval"
    tg.press(ADMIN, ADMIN, control(tg).id, "Approve")
    pump(bot, tg)
    assert get_post(brt.store, post_id)["state"] == "scheduled"


def test_a_refused_send_is_tried_again_and_a_flood_wait_pauses_the_cards(brt, tg):
    post_id = awaiting(brt)
    tg.blocked.add(SECOND_ADMIN)  # has not started the bot yet
    tg.fail_next("send_part", errors.FloodWaitError(request=None, capture=30))
    bot = AdminBot(brt, tg)
    bot.tick()
    assert tg.visible(ADMIN) == [] and bot.quiet_until > now() + timedelta(seconds=25)
    bot.quiet_until = now()
    brt.store.execute("UPDATE bot_cards SET retry_at = '2000-01-01T00:00:00Z'")
    bot.tick()
    assert len(tg.with_buttons(ADMIN)) == 1
    row = brt.store.one("SELECT * FROM bot_cards WHERE chat_id = ?", (SECOND_ADMIN,))
    assert row["status"] == "failed" and "UserIsBlocked" in row["error"]
    tg.blocked.clear()
    brt.store.execute("UPDATE bot_cards SET retry_at = '2000-01-01T00:00:00Z' WHERE status = 'failed'")
    bot.tick()
    assert len(tg.with_buttons(SECOND_ADMIN)) == 1 and get_post(brt.store, post_id)["state"] == "awaiting_approval"


# -- alerts -----------------------------------------------------------------------------------------------


def test_alerts_arrive_with_buttons_throttled_as_before(brt, tg):
    job_id = failed_job(brt, "broken-1", error="Traceback …\nRuntimeError: the disk is full")
    brt.store.execute("UPDATE jobs SET post_id = NULL WHERE id = ?", (job_id,))
    assert brt.notifier.notify(f"settle-failed:{job_id}", f"job {job_id} failed", level="error")
    assert not brt.notifier.notify(f"settle-failed:{job_id}", f"job {job_id} failed", level="error")  # throttled
    queues.pause(brt.redis, "publish")
    brt.notifier.notify("alert:queue:publish", "contentq alert: queue publish has 600 jobs", level="error")
    bot = AdminBot(brt, tg)
    bot.tick()
    alert, queue_alert = [m for m in tg.visible(ADMIN) if "⛔" in m.html]
    assert f"job {job_id} failed" in alert.html
    assert [b.text for row in alert.buttons for b in row] == ["🔁 Retry job", "🔎 Show error"]
    bot.tick()
    assert len([m for m in tg.visible(ADMIN) if "⛔" in m.html]) == 2  # sent once

    tg.press(ADMIN, ADMIN, alert.id, "Show error")
    pump(bot, tg)
    assert "the disk is full" in tg.visible(ADMIN)[-1].html
    tg.press(ADMIN, ADMIN, alert.id, "Retry job")
    pump(bot, tg)
    assert get_job(brt.store, job_id)["status"] == "queued"
    press = tg.press(ADMIN, ADMIN, alert.id, "Retry job")  # again: the job moved on
    pump(bot, tg)
    assert "Nothing done" in tg.answer_to(press)[0]

    assert "Resume publish" in [b.text for row in queue_alert.buttons for b in row][0]
    tg.press(ADMIN, ADMIN, queue_alert.id, "Resume publish")
    pump(bot, tg)
    assert "publish" not in queues.paused_queues(brt.redis)


def test_the_approval_notice_is_the_card_not_a_second_message(brt, tg):
    awaiting(brt)
    AdminBot(brt, tg).tick()
    assert len(tg.visible(ADMIN)) == 2  # the post and its card, no "awaits approval" alert besides
    assert brt.store.scalar("SELECT COUNT(*) FROM bot_outbox WHERE key LIKE 'approval:%' AND sent_at IS NULL") == 0


# -- commands ---------------------------------------------------------------------------------------------


def test_commands(brt, tg):
    post_id = awaiting(brt)
    done = add_post(brt, "done", state="rejected")
    failed_job(brt, "broken-2", error="RuntimeError: boom")
    bot = AdminBot(brt, tg, username="contentq_test_bot")

    def ask(text: str) -> str:
        tg.say(ADMIN, ADMIN, text)
        for event in tg.drain():
            bot.handle(event)
        return tg.visible(ADMIN)[-1].html

    assert "/pending" in ask("/help") and "Reschedule" in ask("/start")
    queues.pause(brt.redis, "maintenance")
    status = ask("/status")
    assert "<b>publish</b>" in status and "<b>maintenance</b> ⏸ paused" in status and "awaiting approval: 1" in status
    assert max(len(line) for line in status.splitlines()) <= 50  # a phone's line
    queues.resume(brt.redis, "maintenance")
    assert ask("/pause publish") == "Queue publish paused." and "publish" in queues.paused_queues(brt.redis)
    assert "already paused" in ask("/pause@contentq_test_bot publish")
    before = len(tg.visible(ADMIN))
    ask("/resume@some_other_bot publish")  # another bot's command in a group: not ours
    assert len(tg.visible(ADMIN)) == before and "publish" in queues.paused_queues(brt.redis)
    assert ask("/resume publish") == "Queue publish resumed."
    assert "unknown queue 'nope'" in ask("/pause nope")
    assert "give one queue" in ask("/pause")
    assert f"{post_id} · news" in ask("/pending")
    failed = ask("/failed")
    assert "broken-2" in failed and "boom" in failed
    assert "rejected" in ask(f"/post {done}")
    assert "no post 12345" in ask("/post 12345")
    ask(f"/post {post_id}")  # awaiting approval: its card, on request
    assert control(tg)
    assert "Unknown command /frobnicate" in ask("/frobnicate")
    assert "Nothing awaits approval." not in ask("/pending")


# -- signing, settings, supervisor ------------------------------------------------------------------------


def test_callback_data_fits_telegrams_64_bytes_and_is_signed(tmp_path):
    key = load_key(tmp_path)
    assert key_path(tmp_path).stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path) == key  # made once
    signer = Signer(key)
    biggest = Callback("rs", str(2**53), 2**53, str(2**31))
    data = signer.sign(biggest)
    assert len(data) <= CALLBACK_DATA_MAX and signer.verify(data) == biggest
    with pytest.raises(ValueError, match="64"):
        signer.sign(Callback("jr", "x" * 50, 1))
    with pytest.raises(ForgedCallback):
        Signer(b"another key of 32 bytes........").verify(data)


def test_bot_settings_are_checked(home):
    with pytest.raises(ConfigError, match="CONTENTQ_BOT_ADMINS.*not a Telegram user id"):
        load_settings(home=home, bot_admins="@alice, 12")
    assert load_settings(home=home, bot_admins=" 12, 34 ").bot_admin_ids == (12, 34)


def test_supervisor_runs_the_bot_only_with_a_token(home):
    without = render_supervisor(load_settings(home=home))
    assert "contentq-bot" not in without
    token = "987654:very-secret-bot-token"
    rendered = render_supervisor(load_settings(home=home, bot_token=token, bot_admins="1", process_layout="spread"))
    assert "[program:contentq-bot]" in rendered and "-m contentq bot" in rendered
    assert "contentq-bot" in rendered.split("programs=", 1)[1].splitlines()[0]
    assert token not in rendered
    hosted = render_supervisor(load_settings(home=home, bot_token=token, bot_admins="1"))  # compact: hosted
    assert "[program:contentq-bot]" not in hosted and token not in hosted
    assert re.search(r"worker publish collect --host (listen,)?bot\n", hosted)


def test_purge_thins_the_bots_records(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    tg.press(ADMIN, ADMIN, control(tg).id, "Reject")
    pump(bot, tg)
    brt.notifier.notify("alert:failures", "contentq alert: 9 failures", level="error")
    pump(bot, tg)
    tg.say(ADMIN, ADMIN, "off topic", reply_to=tg.visible(ADMIN)[-2].id)  # the question came before the alert
    pump(bot, tg)
    assert get_post(brt.store, post_id)["state"] == "rejected"
    old = iso(now() - timedelta(days=brt.settings.retention_days + 1))
    for table, column in (("bot_outbox", "created_at"), ("bot_presses", "at"), ("bot_prompts", "created_at"),
                          ("bot_messages", "at")):  # fmt: skip
        assert brt.store.scalar(f"SELECT COUNT(*) FROM {table}") >= 1
        brt.store.execute(f"UPDATE {table} SET {column} = ?", (old,))
    brt.store.execute("UPDATE posts SET updated_at = ?, collected_at = ?", (old, old))
    report = purge(brt, older_than=timedelta(days=brt.settings.retention_days))
    assert report.removed["bot alerts"] >= 1 and report.removed["bot presses"] >= 1
    assert report.removed["bot prompts"] == 1 and report.removed["posts"] == 1
    for table in ("bot_outbox", "bot_presses", "bot_prompts", "bot_messages", "bot_cards"):
        assert brt.store.scalar(f"SELECT COUNT(*) FROM {table}") == 0, table  # cards go with their post


def test_contentq_bot_runs_under_its_own_process_and_stops_on_term(brt):
    awaiting(brt)
    env = subprocess_env(brt.settings, CONTENTQ_BOT_GATEWAY="tests.fake_bot:fake_bot_from_settings",
                         CONTENTQ_BOT_TOKEN="123456:test-token-value", CONTENTQ_BOT_ADMINS=f"{ADMIN}")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "contentq", "bot"], env=env, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: brt.store.scalar("SELECT COUNT(*) FROM bot_cards WHERE status = 'open'") == 1,
                 what="the card, sent by the bot process")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"bot stopped" in err and b"test-token-value" not in err


def test_contentq_bot_says_what_is_missing(home):
    result = CliRunner().invoke(app, ["bot"])
    assert result.exit_code == 1 and "CONTENTQ_BOT_TOKEN is not set" in str(result.exception or result.output)


def test_doctor_checks_the_bots_settings(home):
    assert check_bot(load_settings(home=home)) is None  # no bot: nothing to check
    no_admins = check_bot(load_settings(home=home, bot_token="1:token-value-x"))
    assert no_admins is not None and no_admins.status == "fail" and "CONTENTQ_BOT_ADMINS is empty" in no_admins.detail
    no_api = check_bot(load_settings(home=home, bot_token="1:token-value-x", bot_admins="5"))
    assert no_api is not None and no_api.status == "fail" and "CONTENTQ_TG_API_ID" in no_api.detail
    fine = check_bot(load_settings(home=home, bot_token="1:token-value-x", bot_admins="5,6", tg_api_id=1,
                                   tg_api_hash="abcdef0123", bot_chat=-100123))  # fmt: skip
    assert fine is not None and fine.status == "ok" and "2 admins" in fine.detail and "-100123" in fine.detail


def test_rewrite_again_from_the_cli_is_the_bots_core(brt):
    post_id = awaiting(brt)
    result = CliRunner().invoke(app, ["rewrite", str(post_id), "--again", "--json"])
    assert result.exit_code == 0, result.output
    assert get_post(brt.store, post_id)["state"] == "collected"
    last = history(brt, post_id)[-1]
    assert last["event"] == "rewrite_again" and str(last["actor"]).startswith("cli:")
    again = CliRunner().invoke(app, ["rewrite", str(post_id), "--again"])
    assert again.exit_code == 1 and "only a rewritten post not yet published" in str(again.exception)


def test_redis_away_gets_a_clear_answer_not_silence(home):
    settings = load_settings(home=home, bot_token="1:x-token-value", bot_admins=str(ADMIN),
                             redis_url="redis://127.0.0.1:1/0")  # fmt: skip
    rt = Runtime(settings)
    set_process_runtime(rt)
    tg = FakeBot()
    tg.start()
    try:
        bot = AdminBot(rt, tg)
        rt.notifier.notify("alert:queue:publish", "contentq alert: queue publish waits", level="error")
        bot.tick()
        (alert,) = tg.visible(ADMIN)
        assert [b.text for row in alert.buttons for b in row] == ["Failed jobs"]  # no Resume: paused is unknown
        tg.say(ADMIN, ADMIN, "/pause publish")
        pump(bot, tg)
        assert "cannot reach Redis" in tg.visible(ADMIN)[-1].html  # the one-line error the CLI prints
    finally:
        rt.close()


def test_login_waits_for_telegram_and_a_refused_token_says_what_to_do(brt):
    awaiting(brt)
    tg = FakeBot()
    tg.fail_next("start", ConnectionError("Telegram is unreachable"), ConnectionError("still unreachable"))
    thread, stop = run_bot(brt, tg)
    wait_for(lambda: len(tg.with_buttons(ADMIN)) == 1, what="the card once Telegram answers")
    stop_bot(tg, thread, stop)
    assert tg.starts == 1
    refused = FakeBot(token_valid=False)
    with pytest.raises(ConfigError, match="Telegram refuses CONTENTQ_BOT_TOKEN.*BotFather"):
        serve(brt, refused, threading.Event())


def test_alerts_wait_for_telegram_and_are_tried_again_when_refused(brt, tg):
    brt.notifier.notify("alert:failures", "contentq alert: 9 failures in an hour", level="error")
    bot = AdminBot(brt, tg)
    tg.fail_next("send_text", ConnectionError("Telegram is unreachable"))
    bot.tick()
    assert tg.visible(ADMIN) == [] and bot.quiet_until > now()
    assert brt.store.one("SELECT attempts FROM bot_outbox")["attempts"] == 0  # an outage spends no try
    bot.quiet_until = now()
    tg.blocked.update({ADMIN, SECOND_ADMIN})  # no admin has started the bot yet
    bot.tick()
    bot.tick()
    row = brt.store.one("SELECT attempts, retry_at, error FROM bot_outbox")
    assert row["attempts"] == 1 and "UserIsBlocked" in row["error"] and parse(row["retry_at"]) > now()
    tg.blocked.clear()
    brt.store.execute("UPDATE bot_outbox SET retry_at = ?", (iso(now()),))
    bot.tick()
    assert "9 failures" in tg.visible(ADMIN)[0].html and "9 failures" in tg.visible(SECOND_ADMIN)[0].html


def test_a_backlog_of_cards_goes_out_over_several_rounds(brt, tg):
    awaiting(brt)
    for n in range(CARDS_PER_TICK + 5):
        pipeline.on_rewritten(brt, add_post(brt, f"post {n}"))
    bot = AdminBot(brt, tg)
    assert bot.send_new_cards() == 2 * CARDS_PER_TICK  # a round's worth per admin chat
    assert bot.send_new_cards() == 2 * 6
    assert bot.send_new_cards() == 0
    assert len(tg.with_buttons(ADMIN)) == CARDS_PER_TICK + 6


def test_a_text_edited_in_the_panel_refreshes_the_card(brt, tg):
    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    pump(bot, tg)
    assert [m.html for m in tg.visible(ADMIN) if not m.buttons] == ["Rewritten <b>news</b> of the day"]
    with actors.acting_as("web:alice"):
        posts.save_text(brt, post_id, "Edited <i>in the panel</i>")
    pump(bot, tg)
    assert [m.html for m in tg.visible(ADMIN) if not m.buttons] == ["Edited <i>in the panel</i>"]
    assert len(tg.with_buttons(ADMIN)) == 1  # the card was replaced, not doubled
    pump(bot, tg)
    assert len(tg.visible(ADMIN)) == 2  # and only once


def test_a_card_whose_media_file_is_gone_says_so(brt, tg):
    album = album_post(brt)
    path = brt.store.scalar("SELECT path FROM media WHERE post_id = ? LIMIT 1", (album,))
    (brt.settings.media_dir / path).unlink()
    AdminBot(brt, tg).tick()
    card = control(tg)
    assert "⚠️" in card.html and "missing" in card.html  # what publishing would refuse, said on the card
    assert [m.media for m in tg.visible(ADMIN) if not m.buttons] == [[]]  # the text alone


def test_a_failed_post_alert_shows_the_post_and_its_job(brt, tg):
    post_id = add_post(brt, "went wrong", state="failed")
    job_id = failed_job(brt, "publish-x", error="RuntimeError: the channel refused it")
    brt.store.execute("UPDATE jobs SET post_id = ? WHERE id = ?", (post_id, job_id))
    brt.notifier.notify(f"publish-failed:{post_id}", f"publishing post {post_id} failed: refused", level="error")
    bot = AdminBot(brt, tg)
    bot.tick()
    (alert,) = tg.visible(ADMIN)
    assert [b.text for row in alert.buttons for b in row] == ["🔁 Retry job", "🔎 Show error", f"📄 Post {post_id}"]
    press = tg.press(ADMIN, ADMIN, alert.id, f"Post {post_id}")
    pump(bot, tg)
    assert tg.answer_to(press) == ("", False)
    assert f"Post {post_id}" in tg.visible(ADMIN)[-1].html and "failed" in tg.visible(ADMIN)[-1].html


# -- review findings: the audit trail, stale Resume buttons, long job ids, deliveries out ------------------


def test_pause_and_resume_from_the_bot_are_in_the_audit_trail_with_the_admin(brt, tg):
    bot = AdminBot(brt, tg)
    tg.say(ADMIN, ADMIN, "/pause publish")
    pump(bot, tg)
    assert tg.visible(ADMIN)[-1].html == "Queue publish paused."
    tg.say(ADMIN, ADMIN, "/resume publish")
    pump(bot, tg)
    queues.set_paused(brt, "maintenance", True)  # by the CLI; the bot's alert offers Resume
    brt.notifier.notify("alert:queue:maintenance", "contentq alert: queue maintenance waits", level="error")
    bot.tick()
    alert = [m for m in tg.visible(SECOND_ADMIN) if "⛔" in m.html][-1]
    tg.press(SECOND_ADMIN, SECOND_ADMIN, alert.id, "Resume maintenance")
    pump(bot, tg)
    assert "maintenance" not in queues.paused_queues(brt.redis)

    result = CliRunner().invoke(app, ["audit", "--json", "--kind", "queue", "--actor", "bot"])
    assert result.exit_code == 0, result.output
    rows = [(r["actor"], r["target"], r["action"]) for r in json.loads(result.output)]
    assert sorted(rows) == [
        (f"bot:{ADMIN}", "publish", "paused"),
        (f"bot:{ADMIN}", "publish", "resumed"),
        (f"bot:{SECOND_ADMIN}", "maintenance", "resumed"),
    ]


def test_a_resume_button_of_an_earlier_pause_is_refused(brt, tg):
    queues.set_paused(brt, "publish", True)
    brt.notifier.notify("alert:queue:publish", "contentq alert: queue publish waits", level="error")
    bot = AdminBot(brt, tg)
    bot.tick()
    (alert,) = [m for m in tg.visible(ADMIN) if "⛔" in m.html]
    queues.set_paused(brt, "publish", False)  # resumed elsewhere, later paused again on purpose
    queues.set_paused(brt, "publish", True)
    press = tg.press(ADMIN, ADMIN, alert.id, "Resume publish")
    pump(bot, tg)
    text, shown_as_alert = tg.answer_to(press)
    assert "earlier pause of queue publish" in text and "paused again" in text and shown_as_alert
    assert "publish" in queues.paused_queues(brt.redis)  # the newer pause holds

    assert brt.notifier.notify("alert:wait:publish", "contentq alert: queue publish still waits", level="error")
    bot.tick()
    fresh = [m for m in tg.visible(ADMIN) if "still waits" in m.html][-1]
    press = tg.press(ADMIN, ADMIN, fresh.id, "Resume publish")  # a button of this pause works
    pump(bot, tg)
    assert tg.answer_to(press)[0] == "Queue publish resumed."
    assert "publish" not in queues.paused_queues(brt.redis)


def test_show_error_of_a_job_whose_retry_button_no_longer_fits_is_answered(brt, tg):
    job_id = failed_job(brt, "k" * 30, error="RuntimeError: the disk is full")
    spare = CALLBACK_DATA_MAX - len(Signer(b"k" * 32).sign(Callback("jr", job_id, 9)))
    job_id = failed_job(brt, "k" * (30 + spare), error="RuntimeError: the disk is full")  # Retry at run 9 fits
    brt.store.execute("UPDATE jobs SET generation = 9, post_id = NULL WHERE id = ?", (job_id,))
    brt.notifier.notify(f"settle-failed:{job_id}", f"job {job_id} failed", level="error")
    bot = AdminBot(brt, tg)
    bot.tick()
    (alert,) = [m for m in tg.visible(ADMIN) if "⛔" in m.html]
    assert [b.text for row in alert.buttons for b in row] == ["🔁 Retry job", "🔎 Show error"]
    brt.store.execute("UPDATE jobs SET generation = 10 WHERE id = ?", (job_id,))  # retried, failed again
    press = tg.press(ADMIN, ADMIN, alert.id, "Show error")
    pump(bot, tg)
    assert tg.answer_to(press) == ("", False)  # answered: the spinner stops
    shown = tg.visible(ADMIN)[-1]
    assert "the disk is full" in shown.html and shown.buttons == []  # `contentq jobs retry` for this one


def test_rewrite_again_refuses_a_post_already_out_on_a_destination(brt, tg):
    from contentq.publish.deliveries import move_delivery
    from contentq.store.deliveries import insert_delivery

    post_id = awaiting(brt)
    bot = AdminBot(brt, tg)
    pump(bot, tg)
    card = control(tg)
    with actors.acting_as("job:deliver-x-1"):  # what its deliver job records once X took the post
        row = insert_delivery(brt.store, post_id, "x:main", "x", "main", "scheduled", iso(), "created", "job:pub-1")
        assert move_delivery(brt.store, row["id"], "started")
        assert move_delivery(brt.store, row["id"], "published", link="https://x.com/i/status/1")
    press = tg.press(ADMIN, ADMIN, card.id, "Rewrite again")
    pump(bot, tg)
    text, alert = tg.answer_to(press)
    assert "cannot be rewritten again: it is out (or going out) on x:main" in text and alert
    assert get_post(brt.store, post_id)["state"] == "awaiting_approval"
    assert history(brt, post_id)[-1]["event"] == "held"
    with pytest.raises(ContentqError, match="cannot be rewritten again"):
        posts.rewrite_again(brt, post_id)  # the CLI's `rewrite --again` and the panel share the core
