"""The file-backed bot fake (tests/shared_bot.py) that supervised bots use under bench/footprint.py: the real
serve loop logs in on it, sends a card, takes a press written by another connection and edits the card; a
command gets its answer; updates written while no bot runs go to the next one; Telegram's refusals are
Telethon's errors."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon import errors

from contentq.bot.serve import serve
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import load_settings
from contentq.store.posts import get_post
from tests import shared_bot
from tests.conftest import wait_for
from tests.shared_bot import SharedBot
from tests.test_bot import awaiting

ADMIN = 111


@pytest.fixture
def brt(home: Path) -> Iterator[Runtime]:
    settings = load_settings(home=home, bot_token="123456:test-token-value", bot_admins=str(ADMIN))
    runtime = Runtime(settings)
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def start_bot(rt: Runtime, db: Path) -> tuple[SharedBot, threading.Thread, threading.Event]:
    gateway, stop = SharedBot(db), threading.Event()
    thread = threading.Thread(target=serve, args=(rt, gateway, stop), kwargs={"tick": 0.05}, daemon=True)
    thread.start()
    return gateway, thread, stop


def stop_bot(gateway: SharedBot, thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    gateway.close()
    thread.join(10)
    assert not thread.is_alive()


def card(db: Path) -> shared_bot.ChatMessage:
    (control,) = [m for m in shared_bot.messages(db, ADMIN) if m.buttons and "awaiting approval" in m.html]
    return control


def test_the_serve_loop_on_the_shared_fake_sends_a_card_and_a_press_edits_it(brt: Runtime, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    post_id = awaiting(brt)
    gateway, thread, stop = start_bot(brt, db)
    try:
        wait_for(lambda: any(m.buttons for m in shared_bot.messages(db, ADMIN)), what="the card")
        assert shared_bot.logins(db) == [os.getpid()]
        first, control = shared_bot.messages(db, ADMIN)
        assert first.html == "Rewritten <b>news</b> of the day" and control.reply_to == first.id
        assert "✅ Approve" in control.labels()

        query = shared_bot.press(db, ADMIN, ADMIN, control.id, "Approve")
        wait_for(lambda: shared_bot.message(db, ADMIN, control.id).buttons == [], what="the card's outcome")
        edited = shared_bot.message(db, ADMIN, control.id)
        assert edited.edits >= 1 and "approved" in edited.html
        assert get_post(brt.store, post_id)["state"] == "scheduled"
        answer = wait_for(lambda: shared_bot.answer_to(db, query), what="the press answered")
        assert answer[0].startswith("Approved:") and not answer[1]

        asked = shared_bot.say(db, ADMIN, ADMIN, "/status")
        wait_for(lambda: shared_bot.messages(db, ADMIN)[-1].reply_to == asked, what="the answer to /status")
    finally:
        stop_bot(gateway, thread, stop)


def test_updates_written_while_no_bot_runs_go_to_the_next_one(brt: Runtime, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    post_id = awaiting(brt)
    gateway, thread, stop = start_bot(brt, db)
    wait_for(lambda: any(m.buttons for m in shared_bot.messages(db, ADMIN)), what="the card")
    stop_bot(gateway, thread, stop)

    shared_bot.press(db, ADMIN, ADMIN, card(db).id, "Reject")
    assert shared_bot.pending(db) == 1
    gateway, thread, stop = start_bot(brt, db)
    try:
        prompt = wait_for(lambda: [m for m in shared_bot.messages(db, ADMIN) if m.force_reply], what="the question")
        shared_bot.say(db, ADMIN, ADMIN, "off topic", reply_to=prompt[0].id)
        wait_for(lambda: get_post(brt.store, post_id)["state"] == "rejected", what="the rejection")
    finally:
        stop_bot(gateway, thread, stop)
    assert shared_bot.pending(db) == 0 and len(shared_bot.logins(db)) == 2


def test_telegrams_refusals_are_telethons_errors(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    with pytest.raises(errors.AccessTokenInvalidError):
        SharedBot(db, shared_bot.INVALID_TOKEN).start()
    gateway = SharedBot(db, "123:ok")
    gateway.start()
    with pytest.raises(errors.MessageEmptyError):
        gateway.send_text(ADMIN, "<b></b>")
    with pytest.raises(errors.MessageTooLongError):
        gateway.send_text(ADMIN, "x" * (shared_bot.TEXT_MAX + 1))
    sent = gateway.send_text(ADMIN, "<b>" + "x" * shared_bot.TEXT_MAX + "</b>")  # the tags do not count
    gateway.delete(ADMIN, [sent])
    with pytest.raises(errors.MessageIdInvalidError):
        gateway.edit_text(ADMIN, sent, "again")
    shared_bot.block(db, 333)
    with pytest.raises(errors.UserIsBlockedError):
        gateway.send_text(333, "hello")
    gateway.close()
