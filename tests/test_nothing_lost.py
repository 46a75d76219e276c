"""Nothing silently lost, end to end on one hand-made donor export (issue 10's "Must show").

tests/assets/export_nothing_lost: a Telegram Desktop export of a tech channel (@donor_channel) whose posts end with
"Подписывайтесь: @donor_channel | Наш чат" (a link to its chat): 8 ordinary posts, a real ad (#реклама, erid), an
8,700-character formatted text (bold, italic and links running across paragraph breaks), a photo with a
1,300-character caption (all of these with the footer), a poll and a service message (a pin). Imported through the
CLI on a route with `skip_ads`, `rewriter = "none"` (what is published is the donor's text) and the Telegram
publisher (the fake gateway), then dispatched and published by the worker.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contentq.cli import app as app_module
from contentq.cli.app import main
from contentq.content.html import html_to_text, validate_html, visible_len_utf16
from contentq.flow.dispatch import dispatch
from contentq.integrations.export import read_export
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import get_settings, load_settings
from contentq.store.posts import get_post
from tests.conftest import drain
from tests.fake_telegram import FakeTelegram
from tests.publish_helpers import fake, joins_back, write_config

EXPORT = Path(__file__).parent / "assets" / "export_nothing_lost"
SOURCE = "@donor_channel"
FOOTER = "Подписывайтесь: @donor_channel | Наш чат"
AD_REASON = "skip_ads: ad marker '#реклама'"
AD_ID, LONG_ID, PHOTO_ID = 10, 11, 12  # source message ids in the export

ROUTE = """
[routes.tech]
target = "@mychan"
sources = ["@donor_channel"]
rewriter = "none"
publisher = "telegram"
[routes.tech.filters]
skip_ads = true
[routes.tech.schedule]
asap = true
"""

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def nrt(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    for key, value in {"PUBLISH_BACKOFF_BASE": "1", "PUBLISH_MIN_INTERVAL": "0", "PUBLISH_ACCOUNT_BUDGET": "0"}.items():
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    get_settings.cache_clear()
    write_config(home, ROUTE)
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """`contentq ARGS` through the real entry point (errors mapped to one line), in this process."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["contentq", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main()
            sys.exit(0)
        out, err = capsys.readouterr()
        return int(info.value.code or 0), out, err

    yield run
    getattr(app_module, "_state", {})["debug"] = False


def source_html(msg_id: int) -> str:
    """The donor's text of one export message, as Telegram HTML (footer included)."""
    (message,) = [m for m in read_export(EXPORT).messages if m.id == msg_id]
    return message.html


def minus_footer(html: str) -> str:
    """The donor's text without its trailing footer block (the last paragraph)."""
    body, footer = html.rsplit("\n\n", 1)
    assert html_to_text(footer) == FOOTER
    return body


def post_of(rt: Runtime, msg_id: int) -> dict[str, Any]:
    row = rt.store.one("SELECT * FROM posts WHERE source = ? AND source_msg_id = ?", (SOURCE, msg_id))
    assert row is not None, msg_id
    return row


def import_json(cli: Cli) -> dict[str, Any]:
    code, out, err = cli("import", str(EXPORT), "--source", SOURCE, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out[out.index("{") :])
    return data


def publish(rt: Runtime) -> FakeTelegram:
    tg = fake(rt)
    drain(rt, "rewrite")
    dispatch(rt)
    drain(rt, "publish")
    return tg


def sent_for(rt: Runtime, tg: FakeTelegram, msg_id: int) -> list[Any]:
    post = get_post(rt.store, post_of(rt, msg_id)["id"])
    assert post["state"] == "published", post["state_reason"]
    ids = json.loads(post["message_ids"])
    by_id = {m.message_id: m for m in tg.visible("@mychan")}
    return [by_id[i] for i in ids]


def test_the_import_summary_counts_every_message_and_says_why(nrt: Runtime, cli: Cli) -> None:
    data = import_json(cli)
    assert (data["source"], data["route"], data["messages"], data["posts"]) == (SOURCE, "tech", 12, 11)
    assert (data["collected"], data["duplicate"], data["filtered"]) == (10, 0, 1)
    assert data["filtered_reasons"] == {AD_REASON: 1}
    assert data["footer_stripped"] == 11 and data["footer"] == [FOOTER]
    assert data["skipped"] == {"poll": 1, "service message": 1} and data["missing_files"] == 0
    assert data["summary"] == [
        "collected 10",
        f"filtered 1: {AD_REASON}",
        "footer stripped from 11",
        "skipped 1 poll, 1 service message",
    ]


def test_ordinary_posts_lose_the_footer_and_are_kept_the_ad_is_filtered_with_its_reason(nrt: Runtime, cli: Cli) -> None:
    import_json(cli)
    for msg_id in range(2, 10):
        post = post_of(nrt, msg_id)
        assert post["state"] == "collected", (msg_id, post["state_reason"])
        assert post["text_html"] == minus_footer(source_html(msg_id))
        assert "donor_chat" not in post["text_html"] and FOOTER not in html_to_text(post["text_html"])
    ad = post_of(nrt, AD_ID)
    assert ad["state"] == "filtered" and ad["state_reason"] == AD_REASON
    assert nrt.store.scalar("SELECT COUNT(*) FROM posts") == 11  # the poll and the pin are not posts

    code, out, _ = cli("posts", "list", "--state", "filtered", "--json")
    assert code == 0
    assert [(p["id"], p["state_reason"]) for p in json.loads(out)] == [(ad["id"], AD_REASON)]
    code, out, _ = cli("posts", "list", "--state", "filtered", "--wide")
    assert code == 0 and AD_REASON in out


def test_the_long_text_is_published_whole_as_several_balanced_parts(nrt: Runtime, cli: Cli) -> None:
    import_json(cli)
    source = minus_footer(source_html(LONG_ID))
    assert visible_len_utf16(source) > 6000
    tg = publish(nrt)
    sent = sent_for(nrt, tg, LONG_ID)
    parts = [m.html for m in sent]
    assert len(parts) >= 2 and all(m.kind is None for m in sent)
    for part in parts:
        assert visible_len_utf16(part) <= 4096
        assert validate_html(part) == [], part  # balanced tags, Telegram's tag set only
    assert joins_back(source, parts)  # nothing lost, nothing added (the footer is not sent)
    assert "".join(html_to_text(p) for p in parts).replace("\n", "") == html_to_text(source).replace("\n", "")
    assert not any("Подписывайтесь" in html_to_text(p) for p in parts)
    # Every link of the body went out (one spanning a cut is re-opened in the next part).
    assert {h for p in parts for h in _hrefs(p)} == set(_hrefs(source))


def test_the_photo_goes_as_media_without_caption_then_the_whole_caption(nrt: Runtime, cli: Cli) -> None:
    import_json(cli)
    caption = minus_footer(source_html(PHOTO_ID))
    assert 1200 < visible_len_utf16(caption) <= 4096
    tg = publish(nrt)
    photo, text = sent_for(nrt, tg, PHOTO_ID)
    assert photo.kind == "photo" and photo.html == ""
    assert text.kind is None and text.html == caption  # nothing lost


def test_every_kept_post_is_published_and_the_ad_is_not(nrt: Runtime, cli: Cli) -> None:
    import_json(cli)
    tg = publish(nrt)
    states = {p["source_msg_id"]: p["state"] for p in nrt.store.query("SELECT * FROM posts")}
    assert states == {**{i: "published" for i in range(2, 13)}, AD_ID: "filtered"}
    assert not any("SkillFactory" in m.html for m in tg.visible("@mychan"))
    assert not any("donor_chat" in m.html for m in tg.visible("@mychan"))


def test_an_export_with_two_messages_sharing_an_id_is_refused_whole(nrt: Runtime, cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(EXPORT, folder)
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    data["messages"][5]["id"] = data["messages"][3]["id"]  # messages 7 and 5 both become 5
    (folder / "result.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    code, out, err = cli("import", str(folder), "--source", SOURCE, "--json")
    assert code == 1 and "{" not in out
    # One error line and nothing else: the progress bar appears only once there is progress to show.
    (line,) = err.splitlines()
    assert line.startswith("error:")
    assert "message id 5 appears twice" in line and "nothing was imported" in line
    assert nrt.store.scalar("SELECT COUNT(*) FROM posts") == 0
    assert nrt.store.scalar("SELECT COUNT(*) FROM jobs") == 0
    assert nrt.store.scalar("SELECT COUNT(*) FROM media") == 0


def _hrefs(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)"', html)
