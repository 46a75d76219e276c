"""The Telethon gateway without a network: raw request building, message conversion, error mapping,
the event-loop thread, sessions and login (against a stub client)."""

from __future__ import annotations

import asyncio
import itertools
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from telethon import errors
from telethon.sessions import StringSession
from telethon.tl import functions
from telethon.tl import types as tl

from contentq.errors import ConfigError, ContentqError
from contentq.integrations.telegram.client import (
    EventLoopThread,
    TelethonGateway,
    build_send_request,
    input_peer,
    load_session_string,
    make_client,
    map_error,
    media_info,
    sent_message_ids,
    to_fetched,
    uploaded_media,
    write_session,
)
from contentq.integrations.telegram.gateway import OutgoingMedia, OutgoingPart, ResolvedChannel
from contentq.integrations.telegram.login import sign_in
from contentq.integrations.telegram.notifier import telegram_backend
from contentq.settings import load_settings

CHANNEL = ResolvedChannel(ref="@target", id=1234, access_hash=5678, title="Target")
PEER = input_peer(CHANNEL)
PHOTO = tl.InputMediaPhoto(id=tl.InputPhoto(id=1, access_hash=2, file_reference=b"r"))


def photo_message(msg_id: int, caption: str = "", grouped_id: int | None = None, **kw: Any) -> tl.Message:
    photo = tl.Photo(
        id=9, access_hash=1, file_reference=b"", date=datetime.now(UTC), dc_id=2,
        sizes=[tl.PhotoSize(type="m", w=320, h=240, size=1000), tl.PhotoSize(type="y", w=1280, h=960, size=9000)],
    )  # fmt: skip
    return tl.Message(
        id=msg_id, peer_id=tl.PeerChannel(1234), date=datetime(2024, 3, 1, tzinfo=UTC), message=caption,
        media=tl.MessageMediaPhoto(photo=photo), grouped_id=grouped_id, **kw,
    )  # fmt: skip


# -- raw requests ------------------------------------------------------------------------------------


def test_text_part_is_a_send_message_request_with_entities_and_the_random_id():
    request = build_send_request(PEER, OutgoingPart(html="<b>Hi</b> <a href='https://x.y'>there</a>"), [111], [])
    assert isinstance(request, functions.messages.SendMessageRequest)
    assert request.peer == PEER and request.random_id == 111
    assert request.message == "Hi there"
    assert [type(e) for e in request.entities] == [tl.MessageEntityBold, tl.MessageEntityTextUrl]
    assert request.entities[1].url == "https://x.y" and request.entities[1].offset == 3


def test_one_media_is_a_send_media_request_with_caption():
    part = OutgoingPart(html="<i>caption</i>", media=[OutgoingMedia(Path("a.jpg"), "photo")])
    request = build_send_request(PEER, part, [7], [PHOTO])
    assert isinstance(request, functions.messages.SendMediaRequest)
    assert request.media is PHOTO and request.random_id == 7 and request.message == "caption"
    assert isinstance(request.entities[0], tl.MessageEntityItalic)


def test_album_is_one_send_multi_media_request_with_a_random_id_per_item():
    part = OutgoingPart(html="<b>album</b>", media=[OutgoingMedia(Path(f"{i}.jpg"), "photo") for i in range(3)])
    request = build_send_request(PEER, part, [11, 12, 13], [PHOTO, PHOTO, PHOTO])
    assert isinstance(request, functions.messages.SendMultiMediaRequest)
    items = request.multi_media
    assert [type(i) for i in items] == [tl.InputSingleMedia] * 3
    assert [i.random_id for i in items] == [11, 12, 13]
    assert [i.message for i in items] == ["album", "", ""]  # the caption rides on the first item
    assert items[0].entities and items[1].entities is None
    assert request.to_dict()["_"] == "SendMultiMediaRequest"
    bytes(request)  # serialisable as MTProto


def test_random_ids_must_match_the_items():
    part = OutgoingPart(html="x", media=[OutgoingMedia(Path("a.jpg"), "photo")] * 2)
    with pytest.raises(ValueError, match="2 random id"):
        build_send_request(PEER, part, [1], [PHOTO, PHOTO])


def test_message_ids_are_read_from_update_message_id_in_random_id_order():
    updates = tl.Updates(
        updates=[
            tl.UpdateMessageID(id=502, random_id=12),
            tl.UpdateMessageID(id=501, random_id=11),
            tl.UpdateNewChannelMessage(message=tl.Message(id=501, peer_id=tl.PeerChannel(1), date=None, message=""),
                                       pts=1, pts_count=1),  # fmt: skip
        ],
        users=[], chats=[], date=datetime.now(UTC), seq=0,
    )  # fmt: skip
    assert sent_message_ids(updates, [11, 12]) == [501, 502]
    short = tl.UpdateShortSentMessage(id=77, pts=1, pts_count=1, date=datetime.now(UTC))
    assert sent_message_ids(short, [5]) == [77]
    with pytest.raises(ConnectionError, match="look at the channel"):
        sent_message_ids(tl.Updates(updates=[], users=[], chats=[], date=datetime.now(UTC), seq=0), [1])


# -- fetched messages ----------------------------------------------------------------------------------


def test_messages_are_converted_to_telegram_html_with_media_info():
    text = tl.Message(
        id=5, peer_id=tl.PeerChannel(1234), date=datetime(2024, 3, 1, tzinfo=UTC), message="Hello 😀 world",
        entities=[tl.MessageEntityBold(offset=9, length=5)], fwd_from=tl.MessageFwdHeader(date=datetime.now(UTC)),
        views=10,
    )  # fmt: skip
    fetched = to_fetched(text)
    assert fetched is not None
    assert fetched.html == "Hello 😀 <strong>world</strong>"  # offsets counted in UTF-16 units
    assert fetched.is_forward and fetched.media is None and fetched.views == 10

    photo = to_fetched(photo_message(6, "cap", grouped_id=99))
    assert photo is not None and photo.grouped_id == 99 and photo.html == "cap"
    assert photo.media is not None and (photo.media.kind, photo.media.width, photo.media.size) == ("photo", 1280, 9000)

    service = tl.MessageService(id=7, peer_id=tl.PeerChannel(1), date=None, action=tl.MessageActionPinMessage())
    assert to_fetched(service) is None
    assert to_fetched(tl.Message(id=8, peer_id=tl.PeerChannel(1), date=None, message="")) is None


def test_document_kinds():
    def doc(*attributes: Any, mime: str = "application/octet-stream") -> tl.Message:
        document = tl.Document(id=1, access_hash=1, file_reference=b"", date=None, mime_type=mime, size=42, dc_id=2,
                               attributes=list(attributes))  # fmt: skip
        return tl.Message(id=1, peer_id=tl.PeerChannel(1), date=None, message="",
                          media=tl.MessageMediaDocument(document=document))  # fmt: skip

    video = media_info(doc(tl.DocumentAttributeVideo(duration=3, w=640, h=360), mime="video/mp4"))
    assert video is not None and (video.kind, video.width, video.mime) == ("video", 640, "video/mp4")
    voice = media_info(doc(tl.DocumentAttributeAudio(duration=3, voice=True)))
    assert voice is not None and voice.kind == "voice"
    sticker = media_info(doc(tl.DocumentAttributeSticker(alt="x", stickerset=tl.InputStickerSetEmpty())))
    assert sticker is not None and sticker.kind == "sticker"
    named = media_info(doc(tl.DocumentAttributeFilename(file_name="report.pdf")))
    assert named is not None and (named.kind, named.file_name, named.size) == ("document", "report.pdf", 42)


def test_collected_media_keep_their_kind_length_title_and_spoiler():
    def doc(*attributes: Any, mime: str = "video/mp4", **flags: Any) -> tl.Message:
        document = tl.Document(id=1, access_hash=1, file_reference=b"", date=None, mime_type=mime, size=42, dc_id=2,
                               attributes=list(attributes))  # fmt: skip
        return tl.Message(id=1, peer_id=tl.PeerChannel(1), date=None, message="",
                          media=tl.MessageMediaDocument(document=document, **flags))  # fmt: skip

    round_video = media_info(
        doc(tl.DocumentAttributeVideo(duration=12.5, w=384, h=384, round_message=True), round=True)
    )
    assert round_video is not None and (round_video.kind, round_video.duration, round_video.width) == (
        "video_note", 12.5, 384)  # fmt: skip
    gif = media_info(doc(tl.DocumentAttributeVideo(duration=3, w=320, h=240), tl.DocumentAttributeAnimated(),
                         tl.DocumentAttributeFilename(file_name="giphy.mp4")))  # fmt: skip
    assert gif is not None and (gif.kind, gif.duration, gif.file_name) == ("animation", 3.0, "giphy.mp4")
    voice = media_info(doc(tl.DocumentAttributeAudio(duration=7, voice=True), mime="audio/ogg"))
    assert voice is not None and (voice.kind, voice.duration) == ("voice", 7.0)
    song = media_info(doc(tl.DocumentAttributeAudio(duration=285, title="Группа крови", performer="Кино"),
                          mime="audio/mpeg"))  # fmt: skip
    assert song is not None and (song.kind, song.title, song.performer, song.duration) == (
        "audio", "Группа крови", "Кино", 285.0)  # fmt: skip
    video_sticker = media_info(doc(tl.DocumentAttributeVideo(duration=2, w=512, h=512),
                                   tl.DocumentAttributeSticker(alt="🔥", stickerset=tl.InputStickerSetEmpty()),
                                   mime="video/webm"))  # fmt: skip
    assert video_sticker is not None and (video_sticker.kind, video_sticker.emoji) == ("sticker", "🔥")
    hidden = media_info(doc(tl.DocumentAttributeVideo(duration=9, w=640, h=360), spoiler=True))
    assert hidden is not None and hidden.kind == "video" and hidden.spoiler
    photo = photo_message(3)
    photo.media.spoiler = True
    spoiler_photo = media_info(photo)
    assert spoiler_photo is not None and spoiler_photo.kind == "photo" and spoiler_photo.spoiler


def test_paid_media_is_fetched_with_its_price_not_as_a_bare_text_post():
    paid = tl.Message(
        id=4, peer_id=tl.PeerChannel(1), date=datetime(2024, 3, 1, tzinfo=UTC), message="Фото за звёзды",
        media=tl.MessageMediaPaidMedia(stars_amount=50, extended_media=[]),
    )  # fmt: skip
    fetched = to_fetched(paid)
    assert fetched is not None and fetched.paid_stars == 50 and fetched.media is None
    silent = tl.Message(id=5, peer_id=tl.PeerChannel(1), date=None, message="",
                        media=tl.MessageMediaPaidMedia(stars_amount=10, extended_media=[]))  # fmt: skip
    fetched = to_fetched(silent)
    assert fetched is not None and fetched.paid_stars == 10  # kept, to be filtered with its reason


UPLOADED = tl.InputFile(id=1, parts=1, name="x", md5_checksum="")


def attribute(media: Any, kind: type) -> Any:
    return next(a for a in media.attributes if isinstance(a, kind))


def test_each_media_kind_is_uploaded_with_the_attributes_telegram_shows(tmp_path):
    def upload(kind: Any, **kw: Any) -> Any:
        media = uploaded_media(OutgoingMedia(tmp_path / f"f.{kind}", kind, **kw), UPLOADED)
        bytes(media)  # serialisable as MTProto
        return media

    sticker = upload("sticker", mime="image/webp", emoji="😂", width=512, height=512)
    assert isinstance(sticker, tl.InputMediaUploadedDocument) and sticker.mime_type == "image/webp"
    assert attribute(sticker, tl.DocumentAttributeSticker).alt == "😂" and not sticker.force_file
    round_video = upload("video_note", mime="video/mp4", duration=12, width=384, height=384)
    video_attr = attribute(round_video, tl.DocumentAttributeVideo)
    assert video_attr.round_message and (video_attr.duration, video_attr.w, video_attr.h) == (12, 384, 384)
    voice = upload("voice", mime="audio/ogg", duration=7)
    assert (
        attribute(voice, tl.DocumentAttributeAudio).voice and attribute(voice, tl.DocumentAttributeAudio).duration == 7
    )
    gif = upload("animation", mime="video/mp4", duration=3, width=320, height=240)
    assert attribute(gif, tl.DocumentAttributeAnimated) and gif.nosound_video
    assert not attribute(gif, tl.DocumentAttributeVideo).round_message
    song = upload("audio", mime="audio/mpeg", duration=285, title="Группа крови", performer="Кино", file_name="s.mp3")
    audio_attr = attribute(song, tl.DocumentAttributeAudio)
    assert (audio_attr.voice, audio_attr.title, audio_attr.performer, audio_attr.duration) == (
        None, "Группа крови", "Кино", 285)  # fmt: skip
    assert attribute(song, tl.DocumentAttributeFilename).file_name == "s.mp3"
    video = upload("video", mime="video/mp4", duration=95, width=1280, height=720)
    video_attr = attribute(video, tl.DocumentAttributeVideo)  # not Telethon's 1x1 of 0 s without hachoir
    assert (video_attr.w, video_attr.h, video_attr.duration, video_attr.supports_streaming) == (1280, 720, 95, True)
    document = upload("document", mime="application/pdf", file_name="Отчёт.pdf")
    assert document.force_file and attribute(document, tl.DocumentAttributeFilename).file_name == "Отчёт.pdf"
    assert upload("photo", spoiler=True).spoiler is True and upload("photo").spoiler is None
    assert upload("video", spoiler=True, duration=5, width=2, height=2).spoiler is True


def test_spoilers_and_formatting_aliases_survive_both_directions():
    from contentq.content.utf16 import utf16_len
    from contentq.integrations.telegram.formatting import entities_to_html, html_to_entities

    text = "Spoiler 😀 hidden, under and struck"
    start = utf16_len("Spoiler 😀 ")
    message = tl.Message(
        id=9, peer_id=tl.PeerChannel(1), date=datetime(2024, 3, 1, tzinfo=UTC), message=text,
        entities=[tl.MessageEntitySpoiler(offset=start, length=6),
                  tl.MessageEntityUnderline(offset=start + 8, length=5),
                  tl.MessageEntityStrike(offset=start + 18, length=6)],
    )  # fmt: skip
    fetched = to_fetched(message)  # collected: the spoiler is kept, not turned into plain text
    assert fetched is not None
    assert fetched.html == "Spoiler 😀 <tg-spoiler>hidden</tg-spoiler>, <u>under</u> and <del>struck</del>"

    for html in (
        "Spoiler 😀 <tg-spoiler>hidden</tg-spoiler>, <ins>under</ins> and <strike>struck</strike>",
        'Spoiler 😀 <span class="tg-spoiler">hidden</span>, <u>under</u> and <s>struck</s>',
    ):
        plain, entities = html_to_entities(html)  # published: what the LLM writes becomes real entities
        assert plain == text
        assert [(type(e), e.offset, e.length) for e in entities] == [
            (tl.MessageEntitySpoiler, start, 6), (tl.MessageEntityUnderline, start + 8, 5),
            (tl.MessageEntityStrike, start + 18, 6),
        ]  # fmt: skip
        assert entities_to_html(plain, entities) == fetched.html

    request = build_send_request(PEER, OutgoingPart(html="<b>x</b> <tg-spoiler>y</tg-spoiler>"), [7], [])
    assert [type(e) for e in request.entities] == [tl.MessageEntityBold, tl.MessageEntitySpoiler]


def test_formatting_round_trips_code_blocks_links_and_quotes():
    from contentq.integrations.telegram.formatting import entities_to_html, html_to_entities

    html = (
        '<pre><code class="language-python">x = 1 &lt; 2</code></pre> <code>inline</code> '
        '<a href="https://e.x/?a=1&amp;b=2">link</a> <blockquote>quoted</blockquote> <em>i</em>'
    )
    text, entities = html_to_entities(html)
    assert text == "x = 1 < 2 inline link quoted i"
    assert entities_to_html(text, entities) == html


# -- errors and the loop thread --------------------------------------------------------------------


def test_errors_are_mapped_telegram_errors_pass_through():
    flood = errors.FloodWaitError(request=None, capture=30)
    assert map_error(flood) is flood
    assert isinstance(map_error(OSError("unreachable")), ConnectionError)
    assert isinstance(map_error(asyncio.IncompleteReadError(b"", 4)), ConnectionError)
    boom = ValueError("a bug")
    assert map_error(boom) is boom


def test_loop_thread_runs_coroutines_and_turns_a_timeout_into_connection_error():
    runner = EventLoopThread()
    try:

        async def answer() -> int:
            return 42

        assert runner.run(answer(), 5) == 42

        async def hang() -> None:
            await asyncio.sleep(30)

        start = time.monotonic()
        with pytest.raises(ConnectionError, match="did not answer within 0.2 s"):
            runner.run(hang(), 0.2)
        assert time.monotonic() - start < 5
    finally:
        runner.stop()


@pytest.mark.parametrize("interrupt", ["timeout", "job timeout"])
def test_a_request_the_caller_gave_up_on_is_cancelled_and_never_completes(interrupt):
    import signal
    import threading

    from rq.timeouts import JobTimeoutException

    runner = EventLoopThread()
    landed, cancelled = threading.Event(), threading.Event()

    async def slow_send() -> None:
        try:
            await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        landed.set()  # the message would be posted here

    def alarm(signum: int, frame: Any) -> None:
        raise JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        if interrupt == "timeout":
            with pytest.raises(ConnectionError):
                runner.run(slow_send(), 0.1)
        else:  # RQ's work-horse timeout: SIGALRM raises in the waiting (main) thread
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            with pytest.raises(JobTimeoutException):
                runner.run(slow_send(), 30)
        assert cancelled.wait(5)
        assert not landed.wait(1.5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        runner.stop()


# -- the gateway over a stub client ----------------------------------------------------------------


class StubClient:
    """Stands in for TelegramClient: records requests, answers like Telegram would."""

    def __init__(self, authorized: bool = True) -> None:
        self.authorized = authorized
        self.connected = False
        self.requests: list[Any] = []
        self.fail: list[BaseException] = []
        self.sent_text: list[tuple[Any, str]] = []
        self.known_users: dict[int, int] = {42: 4242}  # user id → access hash

    def is_connected(self) -> bool:
        return self.connected

    async def connect(self) -> None:
        self.connected = True

    async def disconnect(self) -> None:
        self.connected = False

    async def is_user_authorized(self) -> bool:
        return self.authorized

    async def upload_file(self, path: str) -> Any:
        return tl.InputFile(id=len(self.requests), parts=1, name=Path(path).name, md5_checksum="")

    async def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        if self.fail:
            raise self.fail.pop(0)
        if isinstance(request, functions.messages.UploadMediaRequest):
            photo = tl.Photo(id=len(self.requests), access_hash=3, file_reference=b"f", date=None, dc_id=2, sizes=[])
            return tl.MessageMediaPhoto(photo=photo)
        if isinstance(request, functions.messages.EditMessageRequest):
            return tl.Updates(updates=[], users=[], chats=[], date=datetime.now(UTC), seq=0)
        if isinstance(request, functions.channels.GetMessagesRequest):
            return tl.messages.ChannelMessages(
                pts=1, count=len(request.id), chats=[], users=[], topics=[],
                messages=[stats_message(m.id) if m.id % 2 else tl.MessageEmpty(id=m.id, peer_id=tl.PeerChannel(1234))
                          for m in request.id],
            )  # fmt: skip
        if isinstance(request, functions.channels.GetFullChannelRequest):
            full = tl.ChannelFull(
                id=request.channel.channel_id, about="", read_inbox_max_id=0, read_outbox_max_id=0,
                unread_count=0, chat_photo=tl.PhotoEmpty(id=0), notify_settings=tl.PeerNotifySettings(),
                exported_invite=None, bot_info=[], pts=1, participants_count=4321,
            )  # fmt: skip
            return tl.messages.ChatFull(full_chat=full, chats=[], users=[])
        random_ids = [m.random_id for m in request.multi_media] if hasattr(request, "multi_media") else [
            request.random_id]  # fmt: skip
        return tl.Updates(
            updates=[tl.UpdateMessageID(id=900 + i, random_id=r) for i, r in enumerate(random_ids)],
            users=[], chats=[], date=datetime.now(UTC), seq=0,
        )  # fmt: skip

    async def get_input_entity(self, peer: Any) -> Any:
        """Users the session has seen (Telethon's entity cache); others raise ValueError like Telethon."""
        if isinstance(peer, tl.PeerUser) and peer.user_id in self.known_users:
            return tl.InputPeerUser(user_id=peer.user_id, access_hash=self.known_users[peer.user_id])
        if isinstance(peer, tl.PeerUser) and peer.user_id == 7:  # users.getUsers asked, and refused
            raise errors.UserIdInvalidError(request=None)
        raise ValueError(f"Could not find the input entity for {peer!r}")

    async def get_messages(
        self, peer: Any, limit: int | None = None, min_id: int = 0, ids: Any = None, reverse: bool = False
    ) -> Any:
        messages = [photo_message(i, f"m{i}") for i in (13, 12, 11, 10)]  # newest first, like Telegram
        newer = [m for m in messages if m.id > min_id]
        return list(reversed(newer))[:limit] if reverse else newer[:limit]  # reverse: oldest first

    async def send_message(self, entity: Any, text: str, **kw: Any) -> None:
        self.sent_text.append((entity, text))


def stats_message(message_id: int) -> Any:
    """A channel post with its counters, as channels.getMessages returns it."""
    reactions = tl.MessageReactions(results=[
        tl.ReactionCount(reaction=tl.ReactionEmoji(emoticon="👍"), count=12),
        tl.ReactionCount(reaction=tl.ReactionCustomEmoji(document_id=5368), count=3),
        tl.ReactionCount(reaction=tl.ReactionPaid(), count=2),
    ])  # fmt: skip
    return tl.Message(
        id=message_id, peer_id=tl.PeerChannel(1234), date=datetime.now(UTC), message="post", post=True,
        views=1000 + message_id, forwards=7, replies=tl.MessageReplies(replies=4, replies_pts=1),
        reactions=reactions,
    )  # fmt: skip


@pytest.fixture
def gateway(tmp_path):
    stub = StubClient()
    gw = TelethonGateway(load_settings(home=tmp_path), client_factory=lambda: stub)
    yield gw, stub
    gw.close()


def test_gateway_sends_an_album_through_upload_media_then_one_send_multi_media(gateway, tmp_path):
    gw, stub = gateway
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(b"jpeg")
    part = OutgoingPart(html="<b>news</b>", media=[OutgoingMedia(f, "photo") for f in files])
    assert gw.send(CHANNEL, part, [101, 102, 103]) == [900, 901, 902]
    kinds = [type(r).__name__ for r in stub.requests]
    assert kinds == ["UploadMediaRequest"] * 3 + ["SendMultiMediaRequest"]
    final = stub.requests[-1]
    assert final.peer == PEER and [m.random_id for m in final.multi_media] == [101, 102, 103]
    assert all(isinstance(m.media, tl.InputMediaPhoto) for m in final.multi_media)


def test_gateway_keeps_the_media_spoiler_and_the_voice_length_through_upload_media(gateway, tmp_path):
    gw, stub = gateway
    picture, voice = tmp_path / "p.jpg", tmp_path / "v.ogg"
    picture.write_bytes(b"jpeg")
    voice.write_bytes(b"OggS")
    gw.send(CHANNEL, OutgoingPart(html="Под спойлером", media=[OutgoingMedia(picture, "photo", spoiler=True)]), [7])
    upload, send = stub.requests[-2:]
    assert isinstance(upload.media, tl.InputMediaUploadedPhoto) and upload.media.spoiler is True
    assert isinstance(send, functions.messages.SendMediaRequest)
    assert isinstance(send.media, tl.InputMediaPhoto) and send.media.spoiler is True  # Telegram's answer had none
    gw.send(CHANNEL, OutgoingPart(media=[OutgoingMedia(voice, "voice", mime="audio/ogg", duration=7)]), [8])
    upload = stub.requests[-2]
    audio = attribute(upload.media, tl.DocumentAttributeAudio)
    assert audio.voice and audio.duration == 7 and upload.media.mime_type == "audio/ogg"


def test_a_mention_by_name_is_sent_as_a_mention_entity_with_the_resolved_user(gateway):
    gw, stub = gateway
    html = (
        'Спасибо <a href="tg://user?id=42">Павлу</a> и <a href="tg://user?id=99">Ивану</a>, <b>всем</b>'
        '<a href="tg://user?id=7">!</a>'
    )
    gw.send(CHANNEL, OutgoingPart(html=html), [31])
    request = stub.requests[-1]
    assert request.message == "Спасибо Павлу и Ивану, всем!"
    mention, bold = request.entities  # Ivan cannot be resolved: his name is plain text, not a tg:// URL
    assert isinstance(mention, tl.InputMessageEntityMentionName) and (mention.offset, mention.length) == (8, 5)
    assert mention.user_id == tl.InputUser(user_id=42, access_hash=4242)
    assert isinstance(bold, tl.MessageEntityBold)
    bytes(request)  # serialisable as MTProto
    assert not any(isinstance(e, tl.MessageEntityTextUrl) for e in request.entities)
    gw.edit_message(CHANNEL, 900, html)  # an edit (a donor's change) sends the same entity
    edit = stub.requests[-1]
    assert isinstance(edit, functions.messages.EditMessageRequest)
    assert [type(e) for e in edit.entities] == [tl.InputMessageEntityMentionName, tl.MessageEntityBold]


def test_gateway_passes_telegram_errors_through_unchanged(gateway):
    gw, stub = gateway
    stub.fail.append(errors.RandomIdDuplicateError(request=None))
    with pytest.raises(errors.RandomIdDuplicateError):
        gw.send(CHANNEL, OutgoingPart(html="again"), [55])
    stub.fail.append(errors.FloodWaitError(request=None, capture=420))
    with pytest.raises(errors.FloodWaitError) as flood:
        gw.send(CHANNEL, OutgoingPart(html="later"), [56])
    assert flood.value.seconds == 420


def test_gateway_fetches_oldest_first_and_checks_authorization(gateway):
    gw, stub = gateway
    gw.ensure_ready()
    assert stub.connected
    assert [m.id for m in gw.fetch_messages(CHANNEL, min_id=10, limit=50)] == [11, 12, 13]
    assert [m.id for m in gw.fetch_messages(CHANNEL, min_id=10, limit=2)] == [11, 12]  # after the cursor: oldest
    assert [m.id for m in gw.fetch_messages(CHANNEL, min_id=0, limit=2)] == [12, 13]  # first run: the newest
    stub.authorized = False
    with pytest.raises(errors.AuthKeyUnregisteredError):
        gw.ensure_ready()
    gw.send_admin("-100123", "alert")
    gw.send_admin("@admin", "alert")
    assert stub.sent_text == [(-100123, "alert"), ("@admin", "alert")]


def test_gateway_without_a_session_says_to_log_in(tmp_path):
    gw = TelethonGateway(load_settings(home=tmp_path, tg_api_id=1, tg_api_hash="abcdef0123456789"))
    try:
        with pytest.raises(ContentqError, match="no Telegram session: run `contentq login`"):
            gw.ensure_ready()
    finally:
        gw.close()


# -- sessions, client settings, login ----------------------------------------------------------------


def test_missing_api_credentials_are_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match="CONTENTQ_TG_API_ID and CONTENTQ_TG_API_HASH"):
        make_client(load_settings(home=tmp_path), StringSession())


def test_client_uses_the_configured_device_and_flood_threshold(tmp_path):
    settings = load_settings(
        home=tmp_path, tg_api_id=1, tg_api_hash="abcdef0123456789", tg_device_model="Box",
        tg_system_version="Debian 12", tg_app_version="9.9", tg_flood_sleep_threshold=30,
    )  # fmt: skip
    client = make_client(settings, StringSession())
    init = client._init_request
    assert (init.device_model, init.system_version, init.app_version) == ("Box", "Debian 12", "9.9")
    assert client.flood_sleep_threshold == 30


def test_session_file_is_private_and_the_environment_wins(tmp_path):
    settings = load_settings(home=tmp_path)
    assert load_session_string(settings) == (None, str(settings.session_path))
    write_session(settings.session_path, "1SESSIONSTRING")
    assert stat.S_IMODE(settings.session_path.stat().st_mode) == 0o600
    assert load_session_string(settings) == ("1SESSIONSTRING", str(settings.session_path))
    settings.session_path.chmod(0o644)
    load_session_string(settings)
    assert stat.S_IMODE(settings.session_path.stat().st_mode) == 0o600  # tightened on read
    env = load_settings(home=tmp_path, tg_session="1FROMENV")
    assert load_session_string(env) == ("1FROMENV", "CONTENTQ_TG_SESSION")


class LoginStub:
    def __init__(self, two_factor: bool) -> None:
        self.two_factor = two_factor
        self.session = StringSession()
        self.calls: list[tuple[str, Any]] = []

    async def send_code_request(self, phone: str) -> Any:
        self.calls.append(("code", phone))
        return type("Sent", (), {"phone_code_hash": "hash"})()

    async def sign_in(self, phone: str | None = None, code: str | None = None, password: str | None = None,
                      phone_code_hash: str | None = None) -> None:  # fmt: skip
        self.calls.append(("sign_in", code or password))
        if code is not None and code != "12345":
            raise errors.PhoneCodeInvalidError(request=None)
        if code is not None and self.two_factor:
            raise errors.SessionPasswordNeededError(request=None)

    async def get_me(self) -> Any:
        return tl.User(id=42, first_name="Op", last_name="Erator", username="operator", phone="15550001111")


def test_login_asks_code_then_two_factor_password():
    stub = LoginStub(two_factor=True)
    session, account = asyncio.run(sign_in(stub, "+15550001111", lambda: " 12345 ", lambda: "secret"))
    assert stub.calls == [("code", "+15550001111"), ("sign_in", "12345"), ("sign_in", "secret")]
    assert account.name == "Op Erator" and account.username == "operator"
    assert isinstance(session, str)


def test_login_with_a_wrong_code_says_what_to_do():
    with pytest.raises(ContentqError, match="the login code is wrong; run `contentq login` again"):
        asyncio.run(sign_in(LoginStub(two_factor=False), "+1555", lambda: "999", lambda: ""))


def test_admin_notifications_go_to_the_admin_chat(rt):
    from tests.fake_telegram import FakeTelegram

    fake = FakeTelegram()
    rt.services["telegram"] = fake
    rt.settings.tg_admin_chat = "-100777"
    backend = telegram_backend(rt)
    backend.send("queue is stuck", "error")
    assert fake.admin_messages == [("-100777", "⛔ contentq: queue is stuck")]


def test_message_stats_are_one_get_messages_request_per_call_with_reactions_per_emoji(gateway):
    gw, stub = gateway
    stats = gw.message_stats(CHANNEL, [1, 2, 3])
    (request,) = stub.requests
    assert isinstance(request, functions.channels.GetMessagesRequest)
    assert request.channel == tl.InputChannel(channel_id=1234, access_hash=5678)
    assert [m.id for m in request.id] == [1, 2, 3]
    bytes(request)  # serialisable as MTProto
    assert [s.id for s in stats] == [1, 3]  # message 2 no longer exists (MessageEmpty): left out
    assert (stats[0].views, stats[0].forwards, stats[0].replies) == (1001, 7, 4)
    assert stats[0].reactions == {"👍": 12, "custom:5368": 3, "⭐": 2}
    with pytest.raises(ValueError, match="1 to 100"):
        gw.message_stats(CHANNEL, list(range(101)))
    assert gw.subscriber_count(CHANNEL) == 4321
    assert isinstance(stub.requests[-1], functions.channels.GetFullChannelRequest)
    stub.fail.append(errors.FloodWaitError(request=None, capture=90))
    with pytest.raises(errors.FloodWaitError):
        gw.message_stats(CHANNEL, [5])


# -- one client for the worker's jobs and the listener it hosts ------------------------------------------------


class ListeningStub(StubClient):
    """A client that also takes update handlers, counts its connects and knows the session it was built from."""

    def __init__(self, session: str) -> None:
        super().__init__()
        self.session = session
        self.connects = 0
        self.handlers: list[Any] = []
        self.receive_updates: list[bool] = []

    async def connect(self) -> None:
        await asyncio.sleep(0.05)  # a real connect takes a while: calls arriving meanwhile must not connect again
        self.connects += 1
        self.connected = True

    async def get_entity(self, peers: Any) -> Any:
        return peers

    def add_event_handler(self, handler: Any, builder: Any) -> None:
        self.handlers.append(handler)

    def remove_event_handler(self, handler: Any, builder: Any) -> None:
        self.handlers.remove(handler)

    async def set_receive_updates(self, value: bool) -> None:
        self.receive_updates.append(value)


def test_one_client_serves_the_jobs_and_a_hosted_listener_and_follows_a_new_login(tmp_path, monkeypatch):
    import threading

    from contentq.integrations.telegram import client as telethon_client

    settings = load_settings(home=tmp_path, tg_api_id=1, tg_api_hash="abcdef0123456789")
    built: list[ListeningStub] = []

    def make(settings: Any, session: Any, profile: Any = None) -> ListeningStub:
        built.append(ListeningStub(session))
        return built[-1]

    monkeypatch.setattr(telethon_client, "string_session", lambda value, origin, account="main": value)
    monkeypatch.setattr(telethon_client, "make_client", make)
    write_session(settings.session_path, "first-session")
    gw = TelethonGateway(settings)
    try:
        # The worker's job thread and the listener's thread at once: one client, connected once.
        threads = [threading.Thread(target=gw.ensure_ready) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(built) == 1 and built[0].connects == 1 and built[0].session == "first-session"

        updates = gw.listen([ResolvedChannel("@donor", 1234, access_hash=99)], tick=0.05)
        assert next(updates).kind == "connected"
        assert built[0].receive_updates == [True] and len(built[0].handlers) == 4
        gw.ensure_ready()  # a job meanwhile: the same client
        assert len(built) == 1
        updates.close()  # the listener stops; the client stays for the jobs, asking only
        assert built[0].handlers == [] and built[0].receive_updates == [True, False]

        time.sleep(0.01)  # a later modification time, whatever the file system's resolution
        write_session(settings.session_path, "second-session-after-a-new-login")
        gw.ensure_ready()
        assert [c.session for c in built] == ["first-session", "second-session-after-a-new-login"]
        assert not built[0].connected and built[1].connected
        gw.ensure_ready()
        assert len(built) == 2  # built again only when the file changes

        # A new login while the listener listens: its handlers are on the replaced client, so its live updates end
        # (the listener subscribes again, on the new client) instead of idling deaf on the old one.
        updates = gw.listen([ResolvedChannel("@donor", 1234, access_hash=99)], tick=0.05)
        assert next(updates).kind == "connected" and len(built[1].handlers) == 4
        time.sleep(0.01)
        write_session(settings.session_path, "third-session")
        gw.ensure_ready()  # a job notices the new session file
        assert [c.session for c in built][-1] == "third-session"
        rest = list(itertools.islice(updates, 50))  # ends by itself within a tick or two
        assert len(rest) < 50 and all(u.kind == "idle" for u in rest)
        assert built[1].handlers == []  # nothing left subscribed on the old client
    finally:
        gw.close()
