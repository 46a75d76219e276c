"""The Telethon bot gateway: Telethon's objects into the gateway's dataclasses, the requests it builds, the errors
it lets through or absorbs, its session (a private file with catch-up on) and its token."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from telethon import errors, events
from telethon.sessions import SQLiteSession
from telethon.tl import functions
from telethon.tl import types as tl

from contentq.errors import ConfigError
from contentq.integrations.telegram.bot_client import (
    TelethonBotGateway,
    bot_token,
    buttons_of,
    make_bot_client,
    private_session_file,
    reply_markup,
    to_message,
    to_press,
)
from contentq.integrations.telegram.bot_gateway import BotGateway, Button, IncomingMessage, Press, Status
from contentq.integrations.telegram.gateway import OutgoingMedia, OutgoingPart
from contentq.redact import redact
from contentq.settings import Settings, load_settings
from tests.fake_bot import FakeBot


@pytest.fixture
def bot_settings(home: Path) -> Settings:
    return load_settings(home=home, tg_api_id=12345, tg_api_hash="0123456789abcdef", bot_token="42:AAbot-secret-token",
                         bot_admins="111")  # fmt: skip


def test_both_gateways_speak_the_protocol(bot_settings):
    assert isinstance(FakeBot(), BotGateway)
    assert isinstance(TelethonBotGateway(bot_settings), BotGateway)


def test_a_message_with_formatting_and_a_reply_becomes_an_incoming_message():
    message = tl.Message(
        id=5, peer_id=tl.PeerUser(111), date=datetime.now(UTC), message="new bold text",
        entities=[tl.MessageEntityBold(4, 4)], from_id=tl.PeerUser(111),
        reply_to=tl.MessageReplyHeader(reply_to_msg_id=42),
    )  # fmt: skip
    sender = tl.User(id=111, first_name="Ann", username="ann")
    assert to_message(message, sender) == IncomingMessage(
        chat_id=111, sender_id=111, message_id=5, html="new <strong>bold</strong> text", text="new bold text",
        reply_to=42, sender_name="Ann (@ann)",
    )  # fmt: skip
    group = tl.Message(id=6, peer_id=tl.PeerChannel(500), date=datetime.now(UTC), message="/status",
                       from_id=tl.PeerUser(222))  # fmt: skip
    parsed = to_message(group)
    assert parsed is not None and (parsed.chat_id, parsed.sender_id, parsed.reply_to) == (-1000000000500, 222, None)
    ours = tl.Message(id=7, peer_id=tl.PeerUser(111), date=datetime.now(UTC), message="x", out=True)
    assert to_message(ours) is None  # the bot's own message


def test_a_callback_query_becomes_a_press():
    query = tl.UpdateBotCallbackQuery(query_id=77, user_id=111, peer=tl.PeerUser(111), msg_id=9, chat_instance=1,
                                      data=b"ap|1|2||sig")  # fmt: skip
    event = events.CallbackQuery.Event(query, tl.PeerUser(111), 9)
    assert to_press(event) == Press(query_id=77, chat_id=111, sender_id=111, message_id=9, data=b"ap|1|2||sig")


def test_inline_buttons_and_force_reply_as_telegram_markup():
    keyboard = [[Button("✅ Approve", b"ap|1|2||x"), Button("🚀 Now", b"pn|1|2||y")], [Button("✖️", b"rj|1|2||z")]]
    markup = reply_markup(keyboard)
    assert isinstance(markup, tl.ReplyInlineMarkup)
    callbacks = [[type(b.type) for b in row.buttons] for row in markup.rows]
    assert callbacks == [[tl.InlineButtonTypeCallback] * 2, [tl.InlineButtonTypeCallback]]
    assert buttons_of(markup) == keyboard
    assert isinstance(reply_markup(None, force_reply=True), tl.ReplyKeyboardForceReply)
    assert reply_markup(None) is None
    with pytest.raises(ValueError, match="1 to 64"):
        Button("too long", b"x" * 65)


def test_the_session_is_a_private_file_with_catch_up_on(bot_settings):
    path = bot_settings.bot_session_path
    name = private_session_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    private_session_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # made private again
    client = make_bot_client(bot_settings)
    assert isinstance(client.session, SQLiteSession) and client.session.filename == name
    assert client._catch_up is True  # noqa: SLF001 - what makes Telethon ask for the difference on connect


def test_the_token_is_required_and_never_shown(home, bot_settings):
    with pytest.raises(ConfigError, match="CONTENTQ_BOT_TOKEN is not set.*BotFather"):
        bot_token(load_settings(home=home))
    token = bot_token(bot_settings)
    assert redact(f"login with {token} failed") == "login with *** failed"


class FakeClient:
    """What the gateway calls of a TelegramClient, recording requests; scripted errors raised per request type."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.failures: dict[type, BaseException] = {}
        self.handlers: list[Any] = []
        self.callbacks: list[Any] = []
        self.started_with: str | None = None

    connected = True
    caught_up = 0

    def is_connected(self) -> bool:
        return self.connected

    async def connect(self) -> None:
        self.connected = True

    async def catch_up(self) -> None:
        self.caught_up += 1

    async def disconnect(self) -> None:
        return None

    def add_event_handler(self, handler: Any, builder: Any) -> None:
        self.handlers.append(type(builder))
        self.callbacks.append(handler)

    async def start(self, bot_token: str) -> None:
        self.started_with = bot_token

    async def get_me(self) -> Any:
        return tl.User(id=424242, bot=True, first_name="contentq", username="contentq_bot")

    async def get_input_entity(self, chat: int) -> Any:
        if chat == 404:
            raise ValueError("Could not find the input entity for PeerUser(user_id=404)")
        return tl.InputPeerUser(chat, 0)

    async def upload_file(self, path: str) -> Any:
        return tl.InputFile(id=1, parts=1, name=Path(path).name, md5_checksum="")

    async def delete_messages(self, peer: Any, ids: list[int]) -> None:
        self.requests.append(("delete", ids))

    async def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        if type(request) in self.failures:
            raise self.failures.pop(type(request))
        if isinstance(request, functions.messages.SendMessageRequest):
            return tl.UpdateShortSentMessage(id=501, pts=1, pts_count=1, date=datetime.now(UTC))
        if isinstance(request, functions.messages.UploadMediaRequest):
            return tl.MessageMediaPhoto(photo=tl.Photo(id=9, access_hash=1, file_reference=b"", date=datetime.now(UTC),
                                                       sizes=[], dc_id=2))  # fmt: skip
        if isinstance(request, functions.messages.SendMultiMediaRequest):
            return tl.Updates(updates=[tl.UpdateMessageID(id=600 + i, random_id=m.random_id)
                                       for i, m in enumerate(request.multi_media)], users=[], chats=[],
                              date=datetime.now(UTC), seq=0)  # fmt: skip
        return True


@pytest.fixture
def client_and_gateway(bot_settings):
    client = FakeClient()
    gateway = TelethonBotGateway(bot_settings, client_factory=lambda: client)
    yield client, gateway
    gateway.close()


def test_start_logs_in_with_the_token_and_listens_to_presses_and_messages(client_and_gateway):
    client, gateway = client_and_gateway
    account = gateway.start()
    assert account.username == "contentq_bot" and client.started_with == "42:AAbot-secret-token"
    assert set(client.handlers) == {events.NewMessage, events.CallbackQuery}


def test_requests_built_for_cards_prompts_and_edits(client_and_gateway, tmp_path):
    client, gateway = client_and_gateway
    keyboard = [[Button("✅ Approve", b"ap|1|2||x")]]
    assert gateway.send_text(111, "<b>Post 1</b>", buttons=keyboard, reply_to=7) == 501
    sent = client.requests[-1]
    assert isinstance(sent, functions.messages.SendMessageRequest)
    assert sent.message == "Post 1" and isinstance(sent.entities[0], tl.MessageEntityBold)
    assert buttons_of(sent.reply_markup) == keyboard and sent.reply_to.reply_to_msg_id == 7 and sent.no_webpage
    gateway.send_text(111, "Why?", force_reply=True)
    assert isinstance(client.requests[-1].reply_markup, tl.ReplyKeyboardForceReply)

    photos = []
    for n in range(2):
        path = tmp_path / f"p{n}.jpg"
        path.write_bytes(b"\xff\xd8jpeg")
        photos.append(OutgoingMedia(path=path, kind="photo"))
    assert gateway.send_part(111, OutgoingPart(html="album <i>caption</i>", media=photos)) == [600, 601]
    album = client.requests[-1]
    assert isinstance(album, functions.messages.SendMultiMediaRequest)
    assert album.multi_media[0].message == "album caption" and album.multi_media[1].message == ""

    gateway.edit_text(111, 501, "✅ approved", buttons=None)
    edit = client.requests[-1]
    assert isinstance(edit, functions.messages.EditMessageRequest) and edit.reply_markup is None and edit.id == 501


def test_errors_absorbed_and_passed_through(client_and_gateway):
    client, gateway = client_and_gateway
    client.failures[functions.messages.EditMessageRequest] = errors.MessageNotModifiedError(request=None)
    gateway.edit_text(111, 501, "same text")  # a press handled twice edits to the same text: not an error
    client.failures[functions.messages.SetBotCallbackAnswerRequest] = errors.QueryIdInvalidError(request=None)
    gateway.answer(77, "Approved")  # a press from before a restart is too old to answer: not an error
    answered = client.requests[-1]
    assert answered.query_id == 77 and answered.message == "Approved"
    client.failures[functions.messages.SendMessageRequest] = errors.FloodWaitError(request=None, capture=42)
    with pytest.raises(errors.FloodWaitError) as caught:
        gateway.send_text(111, "alert")
    assert caught.value.seconds == 42
    with pytest.raises(errors.PeerIdInvalidError):  # a chat Telegram does not know: its real error class
        gateway.send_text(404, "card")
    client.failures[functions.messages.SendMessageRequest] = errors.UserIsBlockedError(request=None)
    with pytest.raises(errors.UserIsBlockedError):
        gateway.send_text(111, "card")


def test_updates_are_handed_over_as_dataclasses_and_a_lost_connection_is_restored(client_and_gateway):
    client, gateway = client_and_gateway
    gateway.start()
    on_message, on_press = client.callbacks
    query = tl.UpdateBotCallbackQuery(query_id=78, user_id=111, peer=tl.PeerUser(111), msg_id=9, chat_instance=1,
                                      data=b"ap|1|2||sig")  # fmt: skip
    press = events.CallbackQuery.Event(query, tl.PeerUser(111), 9)

    async def sender() -> Any:
        return tl.User(id=111, first_name="Ann")

    press.get_sender = sender  # type: ignore[method-assign]
    gateway._runner.run(on_press(press), 5)  # noqa: SLF001 - as Telethon calls it, on the client's loop
    updates = gateway.updates(tick=0.05)
    assert next(updates) == Press(78, 111, 111, 9, b"ap|1|2||sig", sender_name="Ann")
    assert next(updates) is None  # nothing for a tick
    client.connected = False  # Telethon gave up on the connection
    seen = [next(updates) for _ in range(60)]
    kinds = [u.kind for u in seen if isinstance(u, Status)]
    assert kinds[:2] == ["disconnected", "connected"] and client.caught_up == 1  # and what it missed is asked for
