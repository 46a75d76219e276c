"""Telegram Desktop export import: formatting, photos, placeholders, service messages, albums, malformed files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.collect import ForegroundContext
from contentq.imports import import_export
from contentq.integrations.export import ExportError, read_export, text_to_html
from tests.conftest import drain

ASSETS = Path(__file__).parent / "assets"
BASIC = ASSETS / "export_basic" / "result.json"
MALFORMED = ASSETS / "export_malformed" / "result.json"

ROUTES = """
[routes.news]
target = "@mine"
sources = ["@donor_export"]
rewriter = "none"

[routes.other]
target = "@mine"
sources = ["@somebody"]
rewriter = "none"
"""


@pytest.fixture
def routes(rt):
    (rt.settings.home / "contentq.toml").write_text(ROUTES)
    return rt


def run_import(rt, path: Path = BASIC, source: str = "@donor_export", **kw):
    return import_export(ForegroundContext(rt), path, source, **kw)


def posts(rt):
    return rt.store.query("SELECT * FROM posts ORDER BY source_msg_id")


def media_of(rt, post_id):
    return rt.store.query("SELECT * FROM media WHERE post_id = ? ORDER BY position", (post_id,))


def test_text_entities_become_telegram_html():
    html = text_to_html(
        ["Plain, ", {"type": "bold", "text": "bold"}, " ", {"type": "italic", "text": "italic"}, " ",
         {"type": "link", "text": "https://example.com/a"}, " ",
         {"type": "text_link", "text": "text link", "href": "https://example.org/b?x=1&y=2"}, " 5 < 6 😀 ",
         {"type": "bold", "text": "after emoji"}]
    )  # fmt: skip
    assert html == (
        'Plain, <strong>bold</strong> <em>italic</em> <a href="https://example.com/a">https://example.com/a</a> '
        '<a href="https://example.org/b?x=1&amp;y=2">text link</a> 5 &lt; 6 😀 <strong>after emoji</strong>'
    )
    assert text_to_html("just <text>") == "just &lt;text&gt;"
    # A custom emoji keeps its id; one exported as a sticker file (a path, no id) stays its plain emoji.
    assert text_to_html(
        [{"type": "custom_emoji", "text": "🔥", "document_id": "5368324170671202286"}, " hot ",
         {"type": "custom_emoji", "text": "👍", "document_id": "stickers/sticker.webp"}]
    ) == '<tg-emoji emoji-id="5368324170671202286">🔥</tg-emoji> hot 👍'  # fmt: skip
    assert text_to_html([{"type": "pre", "text": "x = 1", "language": "python"}]) == (
        '<pre><code class="language-python">x = 1</code></pre>'
    )
    assert text_to_html([{"type": "hashtag", "text": "#tag"}, " ", {"type": "strikethrough", "text": "s"}]) == (
        "#tag <del>s</del>"
    )


def test_import_keeps_formatting_photos_placeholders_and_albums(routes):
    rt = routes
    report = run_import(rt)
    assert report.service_skipped == 2 and report.messages == 8
    assert report.posts == 6 and report.counts.collected == 6 and report.missing_files == 1
    stored = posts(rt)
    assert [json.loads(p["source_msg_ids"]) for p in stored] == [[2], [3], [4], [5, 6, 7], [9], [10]]
    assert all(p["source"] == "@donor_export" and p["route"] == "news" for p in stored)
    text, photo, missing, album, forward, code = stored

    assert text["kind"] == "text"
    assert "<strong>bold</strong> and <em>italic</em>" in text["text_html"]
    assert '<a href="https://example.org/b?x=1&amp;y=2">text link</a>' in text["text_html"]
    assert '<a href="https://example.com/a">https://example.com/a</a>' in text["text_html"]
    assert text["posted_at"].startswith("2024-03-01T10:00:00")

    assert photo["kind"] == "photo" and photo["text_html"] == "A photo with a caption"
    (m,) = media_of(rt, photo["id"])
    original = ASSETS / "export_basic" / "photos" / "photo_1@01-03-2024_11-00-00.jpg"
    assert (rt.settings.media_dir / m["path"]).read_bytes() == original.read_bytes()
    assert m["kind"] == "photo" and m["width"] == 16 and m["sha256"]

    (placeholder,) = media_of(rt, missing["id"])  # "(File not included …)": recorded, without a file
    assert placeholder["path"] is None and placeholder["sha256"] is None
    assert placeholder["kind"] == "photo" and placeholder["width"] == 1280 and placeholder["size"] == 123456

    assert album["kind"] == "album" and album["text_html"] == "<strong>Album</strong> of three items"
    assert [m["kind"] for m in media_of(rt, album["id"])] == ["photo", "photo", "video"]
    assert all(m["path"] for m in media_of(rt, album["id"]))

    assert (forward["is_forward"], forward["forward_name"], forward["forward_link"]) == (1, "Friend Channel", None)
    assert code["text_html"].startswith('<pre><code class="language-python">x = 1</code></pre>\n<code>inline</code>')

    rewrites = rt.store.query("SELECT post_id FROM jobs WHERE kind = 'rewrite' ORDER BY post_id")
    assert [r["post_id"] for r in rewrites] == [p["id"] for p in stored]
    channel = rt.store.one("SELECT * FROM channels WHERE ref = '@donor_export'")
    assert channel["last_message_id"] == 10 and channel["collected_count"] == 6


def test_importing_the_same_export_again_adds_nothing(routes):
    run_import(routes)
    again = run_import(routes)
    assert again.counts.collected == 0 and again.counts.duplicate == 6
    assert len(posts(routes)) == 6


def test_the_same_export_as_another_source_is_all_content_duplicates(routes):
    run_import(routes)
    other = run_import(routes, source="@somebody")
    # all but the post whose photo was not exported: without its file, nothing proves it is the same photo
    assert other.counts.duplicate == 5 and other.counts.collected == 1
    dups = routes.store.query("SELECT * FROM posts WHERE source = '@somebody' AND source_msg_id != 4")
    assert {d["state"] for d in dups} == {"duplicate"} and all(d["duplicate_of"] for d in dups)


def test_textless_photos_without_their_files_are_not_duplicates_of_each_other(routes, tmp_path):
    placeholder = {"photo": "(File not included. Change data exporting settings to download.)",
                   "width": 1280, "height": 720, "photo_file_size": 123456, "text": ""}  # fmt: skip
    messages = [
        {"id": i, "type": "message", "date": f"2024-03-0{i}T12:00:00", "date_unixtime": str(1709294400 + i * 86400),
         **placeholder}
        for i in (1, 2, 3)
    ]  # fmt: skip
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"name": "Photos", "messages": messages}))
    report = run_import(routes, path)
    assert report.counts.collected == 3 and report.counts.duplicate == 0
    assert [p["state"] for p in posts(routes)] == ["collected"] * 3


def test_media_files_are_copied_before_the_write_transaction(routes, monkeypatch):
    """Copying an export's files must not hold the database's write lock (collect jobs would wait)."""
    import sqlite3

    import contentq.imports as export

    real = export.store_file
    locked: list[bool] = []

    def probing(*args, **kw):
        other = sqlite3.connect(routes.settings.db_path, timeout=0.05)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            locked.append(False)
        except sqlite3.OperationalError:
            locked.append(True)
        finally:
            other.close()
        return real(*args, **kw)

    monkeypatch.setattr(export, "store_file", probing)
    assert run_import(routes).counts.collected == 6
    assert locked and not any(locked)


def test_a_database_failure_after_the_files_are_copied_imports_no_row(routes, monkeypatch):
    import contentq.imports as export

    def broken(*args, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(export, "advance", broken)
    with pytest.raises(RuntimeError):
        run_import(routes)
    assert routes.store.scalar("SELECT COUNT(*) FROM posts") == 0
    assert routes.store.scalar("SELECT COUNT(*) FROM media") == 0
    assert routes.store.scalar("SELECT COUNT(*) FROM jobs") == 0


def test_malformed_export_names_the_message_and_imports_nothing(routes):
    with pytest.raises(ExportError) as err:
        run_import(routes, MALFORMED)
    assert "message 3" in str(err.value) and "text part 2 has no 'text'" in str(err.value)
    assert routes.store.scalar("SELECT COUNT(*) FROM posts") == 0
    assert routes.store.scalar("SELECT COUNT(*) FROM channels") == 0
    assert routes.store.scalar("SELECT COUNT(*) FROM jobs") == 0


def test_a_failure_while_storing_rolls_the_whole_import_back(routes, monkeypatch):
    import contentq.imports as export

    calls = {"n": 0}
    real = export.store_file

    def failing(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args, **kw)

    monkeypatch.setattr(export, "store_file", failing)
    with pytest.raises(OSError):
        run_import(routes)
    assert routes.store.scalar("SELECT COUNT(*) FROM posts") == 0
    assert routes.store.scalar("SELECT COUNT(*) FROM media") == 0
    monkeypatch.setattr(export, "store_file", real)
    assert run_import(routes).counts.collected == 6  # the dedup memory forgot the rolled-back posts


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON (line 1, column 2"),
        ('{"name": "x"}', "there is no 'messages' list"),
        ('{"chats": {"list": []}}', "a whole-account export"),
        ('{"messages": [{"id": 7, "type": "message", "text": "no date"}]}', "message 7: 'date' is missing"),
        ('{"messages": [{"id": 7, "date": "yesterday"}]}', "message 7: 'date' is not a date ('yesterday')"),
        ('{"messages": [{"id": 7, "date_unixtime": "soon"}]}', "message 7: 'date_unixtime' is not a number"),
        ('{"messages": [{"type": "message"}]}', "message #1 has no numeric 'id'"),
        ('{"messages": [{"id": 7, "date": "2024-01-01T00:00:00", "text": 5}]}', "message 7: 'text' must be"),
        ('{"messages": [{"id": 7, "date": "2024-01-01T00:00:00", "photo": 5}]}', "message 7: 'photo' is not a"),
        ('{"messages": [{"id": 7, "date": "2024-01-01T00:00:00", "photo": "../../etc/passwd"}]}', "outside"),
    ],
)
def test_malformed_files_get_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "result.json"
    path.write_text(content)
    with pytest.raises(ExportError, match=None) as err:
        read_export(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_older_exports_without_unix_time_group_albums_by_date(tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(ASSETS / "export_basic", folder)
    data = json.loads((folder / "result.json").read_text())
    for message in data["messages"]:
        message.pop("date_unixtime", None)
    (folder / "result.json").write_text(json.dumps(data))
    export = read_export(folder)  # a folder works too
    from contentq.integrations.export import export_groups

    assert [[m.id for m in g] for g in export_groups(export.messages)] == [[2], [3], [4], [5, 6, 7], [9], [10]]


def test_import_command_with_progress_and_json(routes):
    result = CliRunner().invoke(app, ["import", str(BASIC), "--source", "t.me/donor_export", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert data["collected"] == 6 and data["route"] == "news" and data["source"] == "@donor_export"


def test_import_into_an_unknown_source_says_to_pass_a_route(routes):
    from contentq.errors import ContentqError

    with pytest.raises(ContentqError, match="pass --route"):
        run_import(routes, source="@unlisted")
    report = run_import(routes, source="@unlisted", route_name="news")
    assert report.counts.collected == 6


def test_a_post_whose_photo_is_missing_from_the_export_says_so_when_published(rt):
    (rt.settings.home / "contentq.toml").write_text(
        '[routes.news]\ntarget = "@mine"\nsources = ["@donor_export"]\nrewriter = "none"\npublisher = "outbox"\n'
    )
    run_import(rt)
    drain(rt)
    missing = next(p for p in posts(rt) if p["source_msg_ids"] == "[4]")
    assert missing["state"] == "published"
    assert "1 donor media file(s) were never stored" in missing["state_reason"]
    result = CliRunner().invoke(app, ["posts", "show", str(missing["id"])], env={"COLUMNS": "200"})
    assert "photo (donor, no file: left out when published)" in result.output


def test_an_export_of_one_message_says_one_message(routes, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(ASSETS / "export_basic", folder)
    data = json.loads((folder / "result.json").read_text())
    data["messages"] = [m for m in data["messages"] if m["id"] == 2]
    (folder / "result.json").write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["import", str(folder), "--source", "@donor_export"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert ": 1 message, 1 post" in result.output and "1 messages" not in result.output
