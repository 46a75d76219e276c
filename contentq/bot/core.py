"""The admin bot's logic: what it does with each press, reply and command, and its periodic work.

`AdminBot.handle` takes the gateway's dataclasses (a Press, an IncomingMessage, a Status); `AdminBot.tick` sends
the cards of posts that entered awaiting approval, turns the cards of posts moved elsewhere into their outcome,
tries failed cards again and sends the queued alerts. Nothing here knows Telethon or the network.

Who may act: the Telegram users in CONTENTQ_BOT_ADMINS, in their private chat with the bot or in the admin group
(CONTENTQ_BOT_CHAT). Anyone else gets no answer at all, and an audit line in the log. Every action runs as
`bot:<telegram user id>` (contentq.actors) through the core the CLI and the panel call (contentq.review.posts,
publish.core, runtime.tracking, runtime.queues), so the post's history names the admin who pressed.

A button is signed (contentq.bot.signing) for its post's state version: once the post moved (by this button, a
second admin, the CLI), a press on it does nothing and says why; a press Telegram delivers twice (a catch-up
after a restart) is recognised by its query id and run once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from telethon import errors

from contentq import actors
from contentq.bot import cards, commands
from contentq.bot.cards import escape
from contentq.bot.signing import Callback, ForgedCallback, Signer, load_key
from contentq.clock import iso, now
from contentq.errors import ContentqError, NotFoundError
from contentq.integrations.telegram.bot_gateway import BotEvent, BotGateway, IncomingMessage, Keyboard, Press, Status
from contentq.publish.core import publish_now
from contentq.review import posts
from contentq.runtime import queues, tracking
from contentq.runtime.context import Runtime
from contentq.settings import QUEUES
from contentq.store import audit as audit_trail
from contentq.store import bot as records
from contentq.store.jobs import get_job
from contentq.store.posts import get_post

log = logging.getLogger("contentq.bot")
audit = logging.getLogger("contentq.bot.audit")

CARD_RETRY_SECONDS = 60
"""A card whose send failed (the chat refused it, Telegram unreachable) is tried again after this."""

CARDS_PER_TICK = 20
"""Cards sent to one chat per periodic round: a backlog goes out over several rounds, presses in between."""

ALERT_ATTEMPTS = 5
"""Tries of an alert every admin chat refuses (spaced 1, 2, 3 … minutes), then it stays in `contentq notifications`."""

UNREACHABLE_PAUSE_SECONDS = 30
"""Telegram unreachable: the periodic sends wait this long (the gateway reconnects meanwhile)."""

POST_ACTIONS = {"ap", "pn", "rm", "bk", "rp", "r1", "rt", "rs", "rj", "ed", "rw", "sc"}
"""Buttons of a post's card: approve, publish now, the reschedule menu and its choices, reject, edit, rewrite
again, show the card again."""

LEVEL_ICONS = {"error": "⛔", "warning": "⚠️", "info": "ℹ️"}


@dataclass
class Reply:
    """What a press gets: a notice on the presser's screen (`alert`: a popup to dismiss)."""

    text: str = ""
    alert: bool = False


class AdminBot:
    def __init__(
        self, runtime: Runtime, gateway: BotGateway, *, signer: Signer | None = None, username: str | None = None
    ) -> None:
        settings = runtime.settings
        self.username = (username or "").lower()
        """The bot's own @username: in a group, `/status@otherbot` is another bot's command."""
        self.runtime = runtime
        self.store = runtime.store
        self.gateway = gateway
        self.admins = set(settings.bot_admin_ids)
        self.chats = [settings.bot_chat] if settings.bot_chat is not None else list(settings.bot_admin_ids)
        self.signer = signer or Signer(load_key(settings.home))
        self.quiet_until = now()  # after a FLOOD_WAIT: no periodic sends before then

    # -- who may act ---------------------------------------------------------------------------------------

    def allowed(self, sender_id: int, chat_id: int) -> bool:
        return sender_id in self.admins and (chat_id in self.chats or chat_id == sender_id)

    def _refuse(self, what: str, sender_id: int, chat_id: int, name: str) -> None:
        why = (
            "not in CONTENTQ_BOT_ADMINS" if sender_id not in self.admins
            else "an admin, but in a chat that is neither CONTENTQ_BOT_CHAT nor their private chat with the bot"
        )  # fmt: skip
        audit.warning("bot: ignored a %s from Telegram user %s%s in chat %s: %s",
                      what, sender_id, f" ({name})" if name else "", chat_id, why)  # fmt: skip

    # -- events --------------------------------------------------------------------------------------------

    def handle(self, event: BotEvent) -> None:
        if isinstance(event, Press):
            self.on_press(event)
        elif isinstance(event, IncomingMessage):
            self.on_message(event)
        elif isinstance(event, Status):
            if event.kind == "disconnected":
                log.warning("bot: disconnected from Telegram (%s); reconnecting", event.detail)
            else:
                log.info("bot: connected; presses sent meanwhile follow")

    def on_press(self, press: Press) -> None:
        if not self.allowed(press.sender_id, press.chat_id):
            self._refuse("button press", press.sender_id, press.chat_id, press.sender_name)
            return
        try:
            callback = self.signer.verify(press.data)
        except ForgedCallback as exc:
            audit.warning("bot: refused a press by %s in chat %s: %s", press.sender_id, press.chat_id, exc)
            self.gateway.answer(press.query_id, "This button was not made by this bot: nothing done.", alert=True)
            return
        if not records.first_press(
            self.store, press.query_id, press.sender_id, press.chat_id, callback.action, callback.target
        ):
            self.gateway.answer(press.query_id, "This press was handled already.")
            return
        with actors.acting_as(f"bot:{press.sender_id}"):
            try:
                reply = self._act(press, callback)
            except RedisError as exc:  # the queues' server away for a moment: the press may simply be repeated
                reply = Reply(f"Nothing done: Redis is not reachable ({type(exc).__name__}); try again.", alert=True)
            except ContentqError as exc:
                reply = Reply(f"Nothing done: {exc}", alert=True)
                if callback.action in POST_ACTIONS and callback.target.isdigit():
                    self.refresh_post_cards(int(callback.target))
        records.press_result(self.store, press.query_id, reply.text or "ok")
        self.gateway.answer(press.query_id, reply.text, alert=reply.alert)

    def on_message(self, message: IncomingMessage) -> None:
        if not self.allowed(message.sender_id, message.chat_id):
            self._refuse("message", message.sender_id, message.chat_id, message.sender_name)
            return
        if not records.first_message(self.store, message.chat_id, message.message_id):
            log.info("bot: message %s of chat %s was handled already", message.message_id, message.chat_id)
            return
        with actors.acting_as(f"bot:{message.sender_id}"):
            if message.reply_to is not None:
                prompt = records.prompt(self.store, message.chat_id, message.reply_to)
                if prompt is not None:
                    self._answer_prompt(message, prompt)
                    return
            if message.text.startswith("/"):
                self._command(message)

    # -- presses -------------------------------------------------------------------------------------------

    def _act(self, press: Press, cb: Callback) -> Reply:
        if cb.action in POST_ACTIONS:
            return self._post_action(press, cb)
        if cb.action == "jr":
            job = get_job(self.store, cb.target)
            if int(job["generation"] or 0) != cb.version or job["status"] not in ("failed", "cancelled"):
                return Reply(f"Nothing done: job {cb.target} is {job['status']} now (run {job['generation']}).")
            row = tracking.retry(self.runtime, cb.target)
            return Reply(f"Job {cb.target} queued again (run {row['generation']}).")
        if cb.action == "sp":  # read only: the post's card if it awaits approval, else where it stands
            text = self.show_post(int(cb.target), press.chat_id)
            if text:
                self.gateway.send_text(press.chat_id, text)
            return Reply()
        if cb.action == "je":
            self.gateway.send_text(press.chat_id, commands.job_error(self.runtime, cb.target),
                                   buttons=self.job_buttons(cb.target))  # fmt: skip
            return Reply()
        if cb.action == "qr":
            queue = queues.check_queue(cb.target)
            if cb.version != pause_count(self.runtime, queue):
                now_paused = queue in queues.paused_queues(self.runtime.redis)
                return Reply(f"Nothing done: this Resume button is from an earlier pause of queue {queue}, which was "
                             f"{'paused again' if now_paused else 'resumed'} since. /status shows the queues; "
                             f"/resume {queue} resumes it.", alert=True)  # fmt: skip
            changed = queues.set_paused(self.runtime, queue, False)
            return Reply(f"Queue {queue} resumed." if changed else f"Queue {queue} was not paused.")
        if cb.action == "fl":
            text, buttons = commands.failed(self.runtime, self.signer)
            self.gateway.send_text(press.chat_id, text, buttons=buttons)
            return Reply()
        return Reply(f"Unknown button {cb.action!r}: nothing done.", alert=True)

    def _post_action(self, press: Press, cb: Callback) -> Reply:
        post_id = int(cb.target)
        post = get_post(self.store, post_id)
        version = records.post_version(self.store, post_id)
        if cb.version != version:
            self.refresh_post_cards(post_id)
            return Reply(self._stale(post), alert=True)
        rt, chat, control = self.runtime, press.chat_id, press.message_id
        if cb.action == "ap":
            slot = posts.approve(rt, post_id)["scheduled_at"]
            self.close_post_cards(post_id)
            return Reply(f"Approved: {cards.local(slot, self._tz(post))}")
        if cb.action == "pn":
            handed = publish_now(rt, post_id)
            self.close_post_cards(post_id)
            return Reply(f"Publishing now (job {handed.get('job') or 'queued by dispatch'}).")
        if cb.action in ("r1", "rt", "rs"):
            if cb.action == "r1":
                at = "+1h"
            elif cb.action == "rt":
                at = iso(self._tomorrow(post))
            else:
                at = cards.slot_of(cb.arg)
            result = posts.schedule_at(rt, post_id, at)
            self.close_post_cards(post_id)
            return Reply(f"Scheduled: {cards.local(result['scheduled_at'], self._tz(post))}")
        if cb.action == "rm":
            self.gateway.edit_text(chat, control, self._open_text(post, chat, control),
                                   buttons=cards.reschedule_keyboard(self.signer, post_id, version))  # fmt: skip
            return Reply()
        if cb.action == "rp":
            route = cards.route_for(rt, post)
            if route is None:
                raise ContentqError(f"route {post['route']!r} is no longer in the routes file")
            slots = cards.free_slots(rt, post, route, cards.SLOT_CHOICES)
            keyboard = cards.slots_keyboard(self.signer, post_id, version, slots, route.schedule.timezone)
            self.gateway.edit_text(chat, control, self._open_text(post, chat, control), buttons=keyboard)
            return Reply("" if slots else "No free slot in the schedule's horizon.")
        if cb.action == "bk":
            self.gateway.edit_text(chat, control, self._open_text(post, chat, control),
                                   buttons=cards.main_keyboard(self.signer, post_id, version))  # fmt: skip
            return Reply()
        if cb.action == "rj":
            self._ask(chat, control, "reject", post_id, version, press.sender_id,
                      f"Why reject post {post_id}? Reply to this message with the reason (/skip: none).")  # fmt: skip
            return Reply("Reply with the reason.")
        if cb.action == "ed":
            posts.text_to_edit(rt, post_id)  # refuses now what cannot be edited
            self._ask(chat, control, "edit", post_id, version, press.sender_id,
                      f"Reply to this message with the new text of post {post_id}; its formatting is kept. "
                      "The card above shows the text as it is now.")  # fmt: skip
            return Reply("Reply with the new text.")
        if cb.action == "rw":
            posts.rewrite_again(rt, post_id)
            self.close_post_cards(post_id)
            return Reply("Sent back for a new rewrite; its new card follows.")
        if cb.action == "sc":
            self.show_card(post_id, chat)
            return Reply()
        raise ContentqError(f"unknown button {cb.action!r}")

    def _stale(self, post: dict[str, Any]) -> str:
        change = records.last_change(self.store, post["id"])
        who = f" ({change['event']} by {change['actor'] or 'hand'} at {change['at'][11:16]} UTC)" if change else ""
        return f"Nothing done: this card is out of date. Post {post['id']} is {post['state']} now{who}."

    def _tz(self, post: dict[str, Any]) -> str:
        route = cards.route_for(self.runtime, post)
        return route.schedule.timezone if route else "UTC"

    def _tomorrow(self, post: dict[str, Any]) -> datetime:
        route = cards.route_for(self.runtime, post)
        if route is None:
            raise ContentqError(f"route {post['route']!r} is no longer in the routes file")
        return cards.tomorrow_first(self.runtime, post, route)

    def _open_text(self, post: dict[str, Any], chat_id: int, control_id: int) -> str:
        row = records.card_by_control(self.store, chat_id, control_id)
        count = len(records.part_ids(row)) if row else 0
        return cards.header(self.runtime, post, count)

    def _ask(self, chat: int, control: int, kind: str, post_id: int, version: int, user: int, text: str) -> None:
        message_id = self.gateway.send_text(chat, text, reply_to=control, force_reply=True)
        records.add_prompt(self.store, chat, message_id, kind, post_id, version, user)

    # -- replies to a prompt -------------------------------------------------------------------------------

    def _answer_prompt(self, message: IncomingMessage, prompt: dict[str, Any]) -> None:
        chat, post_id = message.chat_id, int(prompt["post_id"])
        if not records.answer_prompt(self.store, chat, int(prompt["message_id"])):
            self.gateway.send_text(chat, "That question was answered already: nothing done.",
                                   reply_to=message.message_id)  # fmt: skip
            return
        try:
            post = get_post(self.store, post_id)
            if records.post_version(self.store, post_id) != int(prompt["version"]):
                self.refresh_post_cards(post_id)
                raise ContentqError(self._stale(post).removeprefix("Nothing done: "))
            if prompt["kind"] == "reject":
                reason = None if message.text.strip() in ("/skip", "-") else message.text.strip()
                posts.reject(self.runtime, post_id, reason)
                self.close_post_cards(post_id)
                text = f"Post {post_id} rejected."
            else:
                saved = posts.save_text(self.runtime, post_id, message.html)
                self.refresh_cards_text(post_id)
                text = f"Post {post_id} saved: {saved['length']} characters{escape(saved['note'])}. Card refreshed."
        except ContentqError as exc:
            if prompt["kind"] == "edit" and get_post(self.store, post_id)["state"] == "awaiting_approval":
                records.reopen_prompt(self.store, chat, int(prompt["message_id"]))
                text = f"Not saved: {escape(str(exc))}. Reply to the question again with a corrected text."
            else:
                text = f"Nothing done: {escape(str(exc))}"
        self.gateway.send_text(chat, text, reply_to=message.message_id)

    # -- commands ------------------------------------------------------------------------------------------

    def _command(self, message: IncomingMessage) -> None:
        word, _, rest = message.text.strip().partition(" ")
        name, _, addressee = word[1:].lower().partition("@")
        if addressee and self.username and addressee != self.username:
            return  # another bot's command in the group
        args = rest.split()
        chat = message.chat_id
        buttons: Keyboard | None = None
        try:
            if name in ("help", "start"):
                text = commands.HELP
            elif name == "status":
                text = commands.status(self.runtime)
            elif name == "pending":
                text, buttons = commands.pending(self.runtime, self.signer)
            elif name == "failed":
                text, buttons = commands.failed(self.runtime, self.signer)
            elif name in ("pause", "resume"):
                if len(args) != 1:
                    raise ContentqError(f"give one queue: /{name} publish (queues: {', '.join(QUEUES)})")
                queue = queues.check_queue(args[0])
                if name == "pause":
                    changed = queues.set_paused(self.runtime, queue, True)
                    text = f"Queue {queue} paused." if changed else f"Queue {queue} was already paused."
                else:
                    changed = queues.set_paused(self.runtime, queue, False)
                    text = f"Queue {queue} resumed." if changed else f"Queue {queue} was not paused."
            elif name == "post":
                if len(args) != 1 or not args[0].isdigit():
                    raise ContentqError("give a post id: /post 7")
                text = self.show_post(int(args[0]), chat)
            else:
                text = f"Unknown command /{escape(name)}. /help lists them."
        except ContentqError as exc:
            text = escape(str(exc))
        except RedisError as exc:
            text = f"Redis is not reachable ({type(exc).__name__}): queues cannot be read or changed now."
        if text:
            self.gateway.send_text(chat, text, buttons=buttons, reply_to=message.message_id)

    def show_post(self, post_id: int, chat_id: int) -> str:
        """`/post ID`: an awaiting post gets its card (again, on request); any other its outcome."""
        post = get_post(self.store, post_id)
        if post["state"] == "awaiting_approval":
            self.show_card(post_id, chat_id)
            return ""
        return cards.outcome(self.runtime, post, records.last_change(self.store, post_id))

    def job_buttons(self, job_id: str) -> Keyboard:
        try:
            job = get_job(self.store, job_id)
        except NotFoundError:
            return []
        if job["status"] not in ("failed", "cancelled"):
            return []
        try:
            return [[cards.button(self.signer, "🔁 Retry job", "jr", job_id, int(job["generation"] or 0))]]
        except ValueError:  # an id too long for Telegram's 64 bytes of callback data: `contentq jobs retry`
            return []

    # -- cards ---------------------------------------------------------------------------------------------

    def show_card(self, post_id: int, chat_id: int) -> None:
        """Send the post's card to the chat on request: a card it has there already is replaced."""
        post = get_post(self.store, post_id)
        entry = records.entry_of(self.store, post_id)
        if post["state"] != "awaiting_approval" or entry is None:
            raise ContentqError(f"post {post_id} is {post['state']}, not awaiting approval: it has no card")
        card_id = records.claim_card(self.store, post_id, chat_id, entry, records.post_version(self.store, post_id))
        if card_id is None:
            row = records.card_for(self.store, post_id, chat_id, entry)
            if row is None:
                raise ContentqError(f"the card of post {post_id} changed meanwhile; try again")
            self._delete_quietly(chat_id, [*records.part_ids(row), *([row["control_id"]] if row["control_id"] else [])])
            card_id = int(row["id"])
        self._send_card(card_id, post_id, chat_id)

    def _send_card(self, card_id: int, post_id: int, chat_id: int) -> bool:
        post = get_post(self.store, post_id)
        parts, note = cards.parts_of(self.runtime, post)
        sent: list[int] = []
        try:
            for part in parts:
                sent += self.gateway.send_part(chat_id, part)
            version = records.post_version(self.store, post_id)
            control = self.gateway.send_text(
                chat_id, cards.header(self.runtime, post, len(parts), note),
                buttons=cards.main_keyboard(self.signer, post_id, version), reply_to=sent[0] if sent else None,
            )  # fmt: skip
        except errors.FloodWaitError as exc:
            self.quiet_until = now() + timedelta(seconds=exc.seconds)
            records.card_failed(self.store, card_id, f"FLOOD_WAIT {exc.seconds} s", iso(self.quiet_until), sent)
            log.warning("bot: Telegram asks for a %s s wait; cards wait until then", exc.seconds)
            return False
        except (errors.RPCError, ConnectionError, OSError) as exc:
            retry = now() + timedelta(seconds=CARD_RETRY_SECONDS)
            records.card_failed(self.store, card_id, f"{type(exc).__name__}: {exc}", iso(retry), sent)
            log.warning("bot: the card of post %s could not be sent to chat %s (%s); trying again at %s",
                        post_id, chat_id, exc, iso(retry))  # fmt: skip
            return False
        records.card_sent(self.store, card_id, sent, control, version)
        return True

    def _delete_quietly(self, chat_id: int, message_ids: list[int]) -> None:
        if not message_ids:
            return
        try:
            self.gateway.delete(chat_id, message_ids)
        except (errors.RPCError, ConnectionError, OSError) as exc:  # an old card stays: the new one says so
            log.info("bot: old card messages in chat %s not deleted: %s", chat_id, exc)

    def close_post_cards(self, post_id: int) -> None:
        """Every open card of the post shows its outcome, without buttons."""
        post = get_post(self.store, post_id)
        change = records.last_change(self.store, post_id)
        text = cards.outcome(self.runtime, post, change)
        version = int(change["id"]) if change else 0
        for row in records.cards_of_post(self.store, post_id):
            self._edit_quietly(int(row["chat_id"]), int(row["control_id"]), text, None)
            records.close_card(self.store, int(row["id"]), text, version)

    def refresh_post_cards(self, post_id: int) -> None:
        """Cards of a post that moved: closed with the outcome, or (back in awaiting approval under the same
        entry) their buttons signed for the new version."""
        post = get_post(self.store, post_id)
        entry = records.entry_of(self.store, post_id)
        version = records.post_version(self.store, post_id)
        for row in records.cards_of_post(self.store, post_id):
            if post["state"] == "awaiting_approval" and entry == row["entry"]:
                if row["version"] != version:
                    self._edit_quietly(int(row["chat_id"]), int(row["control_id"]),
                                       self._open_text(post, int(row["chat_id"]), int(row["control_id"])),
                                       cards.main_keyboard(self.signer, post_id, version))  # fmt: skip
                    records.set_card_version(self.store, int(row["id"]), version)
            else:
                self.close_post_cards(post_id)
                return

    def refresh_cards_text(self, post_id: int) -> None:
        """After an edit: each open card of the post is sent anew (the parts may differ in number and kind)."""
        for row in records.cards_of_post(self.store, post_id):
            self._resend(row)

    def _resend(self, row: dict[str, Any]) -> None:
        chat = int(row["chat_id"])
        self._delete_quietly(chat, [*records.part_ids(row), int(row["control_id"])])
        self._send_card(int(row["id"]), int(row["post_id"]), chat)

    def _edit_quietly(self, chat_id: int, message_id: int, html: str, buttons: Keyboard | None) -> None:
        try:
            self.gateway.edit_text(chat_id, message_id, html, buttons=buttons)
        except errors.FloodWaitError as exc:
            self.quiet_until = now() + timedelta(seconds=exc.seconds)
            log.warning("bot: card in chat %s not updated: FLOOD_WAIT %s s", chat_id, exc.seconds)
        except (errors.RPCError, ConnectionError, OSError) as exc:
            log.warning("bot: card in chat %s not updated: %s", chat_id, exc)

    # -- periodic work -------------------------------------------------------------------------------------

    def startup(self) -> None:
        left = records.interrupted_cards(self.store)
        if left:
            log.warning("bot: %s card(s) were being sent when the bot stopped: not sent again by themselves "
                        "(`/pending` re-sends them on request)", left)  # fmt: skip

    def tick(self) -> None:
        if now() < self.quiet_until:
            return
        self.send_new_cards()
        self.retry_failed_cards()
        for row in records.stale_open_cards(self.store):
            self.refresh_post_cards(int(row["post_id"]))
        for row in records.edited_open_cards(self.store):  # edited elsewhere: shown anew as it will be published
            self._resend(row)
        self.deliver_alerts()

    def send_new_cards(self) -> int:
        """Cards of posts that entered awaiting approval, CARDS_PER_TICK per chat at most, so presses arriving
        meanwhile wait for a few sends only; the rest follow at the next ticks."""
        sent = 0
        for chat in self.chats:
            for entry in records.posts_needing_cards(self.store, chat, CARDS_PER_TICK):
                if now() < self.quiet_until:
                    return sent
                post_id = int(entry["post_id"])
                version = records.post_version(self.store, post_id)
                card_id = records.claim_card(self.store, post_id, chat, int(entry["entry"] or 0), version)
                if card_id is not None and self._send_card(card_id, post_id, chat):
                    sent += 1
        return sent

    def retry_failed_cards(self) -> None:
        for row in records.cards_to_retry(self.store, iso()):
            post = get_post(self.store, int(row["post_id"]))
            if post["state"] != "awaiting_approval":
                records.close_card(self.store, int(row["id"]), f"not sent: the post became {post['state']}", 0)
                continue
            if records.retake_card(self.store, int(row["id"])):
                self._delete_quietly(int(row["chat_id"]), records.part_ids(row))
                self._send_card(int(row["id"]), int(row["post_id"]), int(row["chat_id"]))

    def deliver_alerts(self) -> None:
        """Queued alerts to every admin chat. Telegram unreachable: all wait (no try spent); refused by every
        chat (no admin started the bot): that alert is tried again later, ALERT_ATTEMPTS times in all."""
        for alert in records.unsent_alerts(self.store, iso(), max_attempts=ALERT_ATTEMPTS):
            if str(alert["key"]).startswith("approval:"):
                records.alert_sent(self.store, int(alert["id"]))  # the card is the notice
                continue
            text = f"{LEVEL_ICONS.get(alert['level'], '•')} {escape(str(alert['message']))}"
            try:
                buttons = self.alert_buttons(str(alert["key"]))
            except ValueError:  # an id too long for the 64 bytes of callback data: the alert goes without
                buttons = []
            delivered, problem = 0, ""
            for chat in self.chats:
                try:
                    self.gateway.send_text(chat, text, buttons=buttons or None)
                    delivered += 1
                except errors.FloodWaitError as exc:
                    self.quiet_until = now() + timedelta(seconds=exc.seconds)
                    return
                except (ConnectionError, OSError) as exc:
                    self.quiet_until = now() + timedelta(seconds=UNREACHABLE_PAUSE_SECONDS)
                    log.warning("bot: alerts wait, Telegram is unreachable (%s)", exc)
                    return
                except errors.RPCError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
            if delivered:
                records.alert_sent(self.store, int(alert["id"]))
            else:
                attempts = int(alert["attempts"]) + 1
                retry = now() + timedelta(seconds=CARD_RETRY_SECONDS * attempts)
                records.alert_failed(self.store, int(alert["id"]), problem or "no admin chat", iso(retry))
                log.warning("bot: alert %s refused by every admin chat (%s); try %s of %s", alert["key"], problem,
                            attempts, ALERT_ATTEMPTS)  # fmt: skip

    def alert_buttons(self, key: str) -> Keyboard:
        """Buttons that fit an alert, from its key: the post's card or outcome and its failed job (Retry, Show
        error); a job's Retry and Show error; Resume for a paused queue; the failed jobs for a failure rate."""
        kind, _, what = key.partition(":")
        b = self._button
        rows: Keyboard = []
        if kind in ("publish-failed", "rewrite-failed", "post-failed") and what.isdigit():
            job = records.failed_job_of_post(self.store, int(what))
            if job is not None:
                rows.append([b("🔁 Retry job", "jr", job["id"], int(job["generation"] or 0)),
                             b("🔎 Show error", "je", job["id"])])  # fmt: skip
            rows.append([b(f"📄 Post {what}", "sp", what)])
        elif kind == "settle-failed" and what:
            rows.append([b("🔁 Retry job", "jr", what, self._generation(what)), b("🔎 Show error", "je", what)])
        elif kind == "alert" and what.startswith(("queue:", "wait:")):
            queue = what.partition(":")[2]
            try:
                paused = queue in queues.paused_queues(self.runtime.redis)
            except (RedisError, ContentqError):  # Redis away: the alert goes without the button
                paused = False
            if paused:
                rows.append([b(f"▶️ Resume {queue}", "qr", queue, pause_count(self.runtime, queue))])
            rows.append([b("Failed jobs", "fl", "-")])
        elif kind == "alert" and what == "failures":
            rows.append([b("Failed jobs", "fl", "-")])
        return rows

    def _button(self, text: str, action: str, target: object, version: int = 0) -> Any:
        return cards.button(self.signer, text, action, target, version)

    def _generation(self, job_id: str) -> int:
        try:
            return int(get_job(self.store, job_id)["generation"] or 0)
        except NotFoundError:
            return 0


def pause_count(runtime: Runtime, queue: str) -> int:
    """How many times the queue was paused (each pause by the CLI, the panel or the bot is in the audit trail):
    the version a Resume button is signed for, so a button of an earlier pause is stale once the queue was
    resumed, or resumed and paused again."""
    return sum(1 for row in audit_trail.actions_on(runtime.store, "queue", queue) if row["action"] == "paused")
