"""Long posts go out whole: a hand-made donor export (tests/assets/export_long) imported, rewritten and published
through the fake Telegram. A 6,000+ character text becomes several messages of one batch, a 1,200+ character
caption goes as the photo then the text; the batch keeps the exactly-once ledger and the cancel rule. Also:
`long_text = "truncate"`, part numbers, custom emoji decided per account, forward credit, `posts edit`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon import errors
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.content.html import html_to_text, validate_html, visible_len_utf16
from contentq.content.utf16 import utf16_len
from contentq.flow.dispatch import dispatch
from contentq.intake.collect import ForegroundContext
from contentq.intake.imports import import_export
from contentq.publish.ledger import random_id_for, sends_of
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.settings import get_settings, load_settings
from contentq.store.jobs import job_events
from contentq.store.posts import get_post
from tests.conftest import drain
from tests.publish_helpers import add_media, add_post, fake, joins_back, write_config

EXPORT = Path(__file__).parent / "assets" / "export_long"

ROUTE = """
[routes.news]
target = "@mychan"
sources = ["@long_donor"]
rewriter = "none"
{extra}
[routes.news.schedule]
asap = true
"""


@pytest.fixture
def prt(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    for key, value in {
        "PUBLISH_BACKOFF_BASE": "1",
        "PUBLISH_MIN_INTERVAL": "0",
        "PUBLISH_ACCOUNT_BUDGET": "0",
        "WORKER_MAINTENANCE_INTERVAL": "1",
    }.items():
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    get_settings.cache_clear()
    write_config(home, ROUTE.format(extra=""))
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def import_and_rewrite(rt: Runtime) -> tuple[dict, dict]:
    """The export imported (a rewrite job per post), rewritten by `rewriter = "none"`: (long text, photo)."""
    report = import_export(ForegroundContext(rt), EXPORT, "@long_donor")
    assert report.posts == 2
    drain(rt, "rewrite")
    text, photo = rt.store.query("SELECT * FROM posts ORDER BY source_msg_id")
    return text, photo


def publish_events(rt: Runtime, post_id: int) -> list[dict]:
    row = rt.store.one("SELECT id FROM jobs WHERE kind = 'publish' AND post_id = ? ORDER BY rowid DESC", (post_id,))
    assert row is not None
    return job_events(rt.store, row["id"])


def assert_parts(parts: list[str], source_html: str, limit: int = 4096) -> None:
    for part in parts:
        assert utf16_len(html_to_text(part)) <= limit
        assert validate_html(part) == [], part  # balanced tags, Telegram's tag set only
    assert joins_back(source_html, parts)


def test_a_long_formatted_text_from_an_export_is_published_whole_as_several_messages(prt):
    tg = fake(prt)
    text_post, _ = import_and_rewrite(prt)
    source = text_post["text_html"]
    assert visible_len_utf16(source) > 6000
    assert text_post["rewrite_html"] == source and text_post["truncated"] == 0  # the rewriter cut nothing
    drain(prt, "publish")

    post = get_post(prt.store, text_post["id"])
    assert post["state"] == "published" and post["state_reason"] is None
    sent = [m for m in tg.visible("@mychan") if m.message_id in json.loads(post["message_ids"])]
    parts = [m.html for m in sent]
    assert len(parts) >= 2 and all(m.kind is None for m in sent)
    assert_parts(parts, source)
    # The quote that spans a cut (or not) and the links are all there, each part well-formed.
    assert sum(p.count("<a href=") for p in parts) == source.count("<a href=")
    # One sends row per part, each with its own deterministic random id.
    rows = sends_of(prt.store, post["id"])
    assert [r["part"] for r in rows] == list(range(len(parts))) and {r["status"] for r in rows} == {"sent"}
    assert [r["random_id"] for r in rows] == [random_id_for(post["id"], 1234567, 0, i, 0) for i in range(len(parts))]
    assert [m.random_id for m in sent] == [r["random_id"] for r in rows]
    split = [e for e in publish_events(prt, post["id"]) if e["event"] == "split"]
    assert split and f"sent as {len(parts)} messages" in split[0]["message"]


def test_a_long_caption_from_an_export_goes_as_the_photo_then_the_text(prt):
    tg = fake(prt)
    _, photo_post = import_and_rewrite(prt)
    caption = photo_post["text_html"]
    assert 1200 < visible_len_utf16(caption) <= 4096
    assert photo_post["rewrite_html"] == caption  # not cut to the caption limit by the rewriter
    drain(prt, "publish")

    post = get_post(prt.store, photo_post["id"])
    assert post["state"] == "published"
    photo, text = (m for m in tg.visible("@mychan") if m.message_id in json.loads(post["message_ids"]))
    assert photo.kind == "photo" and photo.html == ""
    assert text.kind is None and text.html == caption  # nothing lost
    assert "caption_moved" in [e["event"] for e in publish_events(prt, post["id"])]


def long_post(rt: Runtime, paragraphs: int = 30, **fields: object) -> tuple[int, str]:
    html = "\n\n".join(
        f"<b>Paragraph {n}.</b> " + "Some <i>formatted</i> words in a sentence. " * 8 for n in range(paragraphs)
    )
    post_id = add_post(rt, html, state="scheduled", scheduled_at=iso(now()), **fields)  # type: ignore[arg-type]
    return post_id, html


def test_a_failing_middle_part_cancels_the_whole_batch(prt):
    tg = fake(prt)
    post_id, _ = long_post(prt)
    tg.fail_next("send", None, errors.ChatWriteForbiddenError(request=None))
    dispatch(prt)
    drain(prt, "publish")
    assert tg.visible("@mychan") == []  # part 1 went out, part 2 was refused: part 1 was deleted
    assert len(tg.sent) == 1 and tg.sent[0].deleted
    post = get_post(prt.store, post_id)
    assert post["state"] == "failed" and "ChatWriteForbiddenError" in post["state_reason"]
    assert [s["status"] for s in sends_of(prt.store, post_id)] == ["deleted", "failed"]  # part 3 never tried
    assert post["publish_round"] == 1


def test_a_crash_mid_batch_resends_no_part_twice(prt):
    tg = fake(prt)
    post_id, html = long_post(prt)
    # Part 1 goes out; part 2 goes out too, but the worker dies before it is recorded.
    tg.fail_after_next("send", None, RuntimeError("worker died after part 2 left"))
    dispatch(prt)
    drain(prt, "publish")
    post = get_post(prt.store, post_id)
    assert post["state"] == "published"
    texts = [m.html for m in tg.sent]
    assert len(texts) == len(set(texts)) >= 3  # every part exactly once
    assert [m.html for m in tg.visible("@mychan")] == texts
    assert_parts(texts, html)
    assert json.loads(post["message_ids"]) == [m.message_id for m in tg.sent]
    messages = [e["message"] for e in publish_events(prt, post_id) if e["event"] == "settled"]
    assert any("part 2 was sent before" in m for m in messages)


def test_outbox_shows_each_part_as_its_own_message(prt, home):
    write_config(home, ROUTE.format(extra='publisher = "outbox"\nnumber_parts = true'))
    fake(prt)
    post_id, html = long_post(prt)
    dispatch(prt)
    drain(prt, "publish")
    folder = prt.settings.outbox_dir / "news" / str(post_id)
    meta = json.loads((folder / "meta.json").read_text())
    parts = meta["parts"]
    total = len(parts)
    assert total >= 2 and all(p["kind"] == "text" and p["length"] <= 4096 for p in parts)
    assert [p["html"].rsplit("\n\n", 1)[1] for p in parts] == [f"{n}/{total}" for n in range(1, total + 1)]
    assert_parts([p["html"].rsplit("\n\n", 1)[0] for p in parts], html)
    assert (folder / "post.html").read_text().count('class="tg-message"') == total


def test_truncate_cuts_with_an_ellipsis_and_says_so_on_the_post(prt, home):
    write_config(home, ROUTE.format(extra='long_text = "truncate"'))
    tg = fake(prt)
    post_id, html = long_post(prt)
    dispatch(prt)
    drain(prt, "publish")
    (message,) = tg.visible("@mychan")
    assert visible_len_utf16(message.html) <= 4096 and html_to_text(message.html).endswith("…")
    post = get_post(prt.store, post_id)
    assert post["state"] == "published" and post["truncated"] == 1
    assert 'long_text = "truncate"' in post["state_reason"]
    shown = CliRunner().invoke(app, ["posts", "show", str(post_id)])
    assert shown.exit_code == 0 and "truncate" in shown.output


@pytest.mark.parametrize("premium", [False, True])
def test_custom_emoji_are_kept_through_collect_and_rewrite_and_decided_at_publish(prt, premium):
    tg = fake(prt, premium=premium)
    emoji = '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>'
    tg.add_message("@long_donor", 1, f"Great news {emoji} <b>today</b>")
    enqueue(prt, "collect", "@long_donor", {"source": "@long_donor"})
    drain(prt, "collect")
    drain(prt, "rewrite")
    (post,) = prt.store.query("SELECT * FROM posts")
    assert emoji in post["rewrite_html"]
    drain(prt, "publish")
    (message,) = tg.visible("@mychan")
    if premium:
        assert message.html == f"Great news {emoji} <b>today</b>"
    else:
        assert message.html == "Great news 👍 <b>today</b>"
    (decision,) = [e for e in publish_events(prt, post["id"]) if e["event"] == "custom_emoji"]
    assert ("as custom emoji" if premium else "as their plain emoji") in decision["message"]


def test_forward_credit_is_added_when_the_origin_is_known(prt, home):
    write_config(home, ROUTE.format(extra='forward_credit = "via <a href=\\"{link}\\">{name}</a>"'))
    tg = fake(prt)
    known = add_post(
        prt, "Forwarded <b>news</b>", state="scheduled", scheduled_at=iso(now()), is_forward=1,
        forward_name="Origin & Co", forward_link="https://t.me/origin/42",
    )  # fmt: skip
    unknown = add_post(prt, "Forwarded, origin hidden", state="scheduled", scheduled_at=iso(now()), is_forward=1)
    own = add_post(prt, "Our own post", state="scheduled", scheduled_at=iso(now()))
    dispatch(prt)
    drain(prt, "publish")
    by_post = {p: get_post(prt.store, p) for p in (known, unknown, own)}
    html = {m.message_id: m.html for m in tg.visible("@mychan")}
    sent = {p: html[json.loads(row["message_ids"])[0]] for p, row in by_post.items()}
    assert sent[known] == 'Forwarded <b>news</b>\n\nvia <a href="https://t.me/origin/42">Origin &amp; Co</a>'
    assert sent[unknown] == "Forwarded, origin hidden"
    assert "origin is not known" in by_post[unknown]["state_reason"]
    assert sent[own] == "Our own post"


def test_a_bad_forward_credit_template_is_a_clear_config_error(prt, home):
    write_config(home, ROUTE.format(extra='forward_credit = "via {channel}"'))
    result = CliRunner().invoke(app, ["posts", "list"])
    assert result.exit_code == 0  # listing does not read routes
    from contentq.errors import ConfigError
    from contentq.routes import load_routes

    with pytest.raises(ConfigError, match=r"forward_credit: forward_credit uses \{channel\}"):
        load_routes(home / "contentq.toml")


def test_posts_edit_accepts_any_length_under_split_but_not_under_truncate(prt, home, monkeypatch):
    post_id = add_post(prt, "short", state="rewritten")
    long_html = "<b>Long</b> " + "text " * 1500
    monkeypatch.setattr("click.edit", lambda *a, **k: long_html)
    result = CliRunner().invoke(app, ["posts", "edit", str(post_id)])
    assert result.exit_code == 0, result.output
    assert "sent as 2 messages" in result.output
    assert get_post(prt.store, post_id)["rewrite_html"] == long_html

    write_config(home, ROUTE.format(extra='long_text = "truncate"'))
    result = CliRunner().invoke(app, ["posts", "edit", str(post_id)])
    assert result.exit_code != 0 and "over Telegram's 4096" in str(result.exception)
    monkeypatch.setattr("click.edit", lambda *a, **k: "<b>broken")
    result = CliRunner().invoke(app, ["posts", "edit", str(post_id)])
    assert result.exit_code != 0 and "not valid Telegram HTML" in str(result.exception)


def test_a_caption_with_media_under_split_keeps_album_then_text_parts(prt):
    tg = fake(prt)
    post_id, html = long_post(prt, kind="album")
    for i in range(2):
        add_media(prt, post_id, "photo", position=i)
    dispatch(prt)
    drain(prt, "publish")
    visible = tg.visible("@mychan")
    assert [m.kind for m in visible[:2]] == ["photo", "photo"] and all(m.html == "" for m in visible[:2])
    texts = [m.html for m in visible[2:]]
    assert len(texts) >= 2
    assert_parts(texts, html)


def test_the_telethon_adapter_reads_a_forwarded_messages_origin():
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from telethon import utils
    from telethon._updates import EntityCache
    from telethon.tl import types as tl

    from contentq.integrations.telegram.client import to_fetched

    origin = tl.Channel(
        id=777, title="Origin News", photo=tl.ChatPhotoEmpty(), date=datetime.now(UTC), username="origin_news",
        access_hash=1,
    )  # fmt: skip
    header = tl.MessageFwdHeader(date=datetime.now(UTC), from_id=tl.PeerChannel(777), channel_post=42)
    message = tl.Message(id=5, peer_id=tl.PeerChannel(1234), date=datetime.now(UTC), message="hi", fwd_from=header)
    message._finish_init(
        SimpleNamespace(_self_id=1, _mb_entity_cache=EntityCache()), {utils.get_peer_id(origin): origin}, None
    )
    fetched = to_fetched(message)
    assert fetched is not None and fetched.is_forward
    assert (fetched.forward_name, fetched.forward_link) == ("Origin News", "https://t.me/origin_news/42")

    hidden = tl.MessageFwdHeader(date=datetime.now(UTC), from_name="Hidden Person")
    fetched = to_fetched(
        tl.Message(id=6, peer_id=tl.PeerChannel(1234), date=datetime.now(UTC), message="x", fwd_from=hidden)
    )
    assert fetched is not None and (fetched.forward_name, fetched.forward_link) == ("Hidden Person", None)


def write_export(folder: Path, messages: list[dict]) -> Path:
    """A Telegram Desktop export of these messages (ids, dates and "type" filled in when left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    full = []
    for number, message in enumerate(messages, start=1):
        stamp = 1717225200 + number * 60
        full.append({"id": number, "type": "message", "date": iso(now())[:19], "date_unixtime": str(stamp), **message})
    path = folder / "result.json"
    path.write_text(json.dumps({"name": "Donor", "type": "public_channel", "messages": full}, ensure_ascii=False))
    return path


def test_code_blocks_reach_telegram_with_their_blank_lines_and_indentation(prt, tmp_path):
    """`<pre>import json\\n\\n\\nclass A</pre>` keeps both blank lines through the rewrite; a long Python block is
    sent in parts cut at line ends, each line with its indentation as Telegram receives it (leading whitespace of
    a message is trimmed: a part going on at an indented line starts with '…')."""
    from contentq.content.split import CODE_CONTINUED
    from contentq.integrations.telegram.formatting import html_to_entities

    tg = fake(prt)
    short = "import json\n\n\nclass A"
    long = "import json\n\n\nclass Config:\n" + "".join(
        f"    def value_{n}(self) -> int:\n        if self.ready:\n            return {n}\n        return 0\n\n"
        for n in range(90)
    )
    path = write_export(tmp_path / "export", [
        {"text": [{"type": "pre", "text": short, "language": "python"}]},
        {"text": ["Код:\n", {"type": "pre", "text": long.rstrip("\n"), "language": "python"}]},
    ])  # fmt: skip
    import_export(ForegroundContext(prt), path, "@long_donor")
    drain(prt, "rewrite")
    drain(prt, "publish")
    first, *rest = tg.visible("@mychan")
    assert first.html == f'<pre><code class="language-python">{short}</code></pre>'
    assert len(rest) >= 2
    received = []
    for number, message in enumerate(rest):
        text, entities = html_to_entities(message.html)  # what goes into the request: its ends trimmed
        pre = next(e for e in entities if type(e).__name__ == "MessageEntityPre")
        if number:
            assert text.startswith(CODE_CONTINUED + "\n    def value_"), text[:40]
        received.append(text[pre.offset : pre.offset + pre.length])
    lines = long.rstrip("\n").split("\n")
    for chunk in received:
        start = lines.index(chunk.split("\n")[0])
        assert lines[start : start + chunk.count("\n") + 1] == chunk.split("\n")
    assert sum(chunk.count("\n") + 1 for chunk in received) + len(received) - 1 == len(lines)  # blank line per cut
