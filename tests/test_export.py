"""Telegram Desktop export import: formatting, photos, placeholders, service messages, albums, malformed files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.intake.collect import ForegroundContext
from contentq.intake.imports import import_export
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

    import contentq.intake.imports as export

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
    import contentq.intake.imports as export

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
    import contentq.intake.imports as export

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


# -- media kinds, albums, unsupported messages (issue 29) -------------------------------------------------


def write_export(folder: Path, messages: list[dict], files: dict[str, bytes] | None = None) -> Path:
    """A Telegram Desktop export in `folder`: these messages ("type", "date" filled in when left out) and files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    full = []
    for message in messages:
        if message.get("type") == "unsupported":
            full.append(message)  # Telegram Desktop writes only its id and type
            continue
        stamp = message.pop("unix", 1717225200 + message["id"] * 60)
        full.append({"type": "message", "date": "2024-06-01T07:00:00", "date_unixtime": str(stamp), **message})
    path = folder / "result.json"
    path.write_text(json.dumps({"name": "Donor", "type": "public_channel", "id": 1, "messages": full}))
    return path


def test_an_unsupported_message_is_skipped_and_counted_not_fatal(routes, tmp_path):
    path = write_export(tmp_path / "e", [
        {"id": 1, "text": "Before"},
        {"id": 2, "type": "unsupported"},
        {"id": 3, "text": "After"},
        {"id": 4, "type": "unsupported"},
    ])  # fmt: skip
    report = run_import(routes, path)
    assert report.counts.collected == 2 and [p["text_html"] for p in posts(routes)] == ["Before", "After"]
    assert report.skipped == {"unsupported message": 2}
    assert "skipped 2 unsupported messages" in report.lines()
    assert routes.store.one("SELECT * FROM channels WHERE ref = '@donor_export'")["last_message_id"] == 3
    result = CliRunner().invoke(app, ["import", str(path), "--source", "@somebody", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert data["skipped"] == {"unsupported message": 2} and "skipped 2 unsupported messages" in data["summary"]


def photo(message_id: int, text: object = "", unix: int = 1717225200, **extra: object) -> dict:
    return {"id": message_id, "photo": f"photos/p{message_id}.jpg", "width": 16, "height": 12, "text": text,
            "unix": unix, **extra}  # fmt: skip


def photo_files(*ids: int) -> dict[str, bytes]:
    return {f"photos/p{i}.jpg": f"jpeg {i}".encode() for i in ids}


def test_photos_of_one_second_with_their_own_captions_are_posts_of_their_own(routes, tmp_path):
    path = write_export(tmp_path / "e", [
        photo(1, "Москва: солнечно, +21"), photo(2, "Казань: дождь, +15"), photo(3, "Сочи: жара, +30"),
    ], photo_files(1, 2, 3))  # fmt: skip
    report = run_import(routes, path)
    assert report.posts == 3 and report.counts.collected == 3
    stored = posts(routes)
    assert [p["text_html"] for p in stored] == ["Москва: солнечно, +21", "Казань: дождь, +15", "Сочи: жара, +30"]
    assert [p["kind"] for p in stored] == ["photo"] * 3
    assert [len(media_of(routes, p["id"])) for p in stored] == [1, 1, 1]


def test_an_album_takes_only_the_captionless_items_after_its_caption(routes, tmp_path):
    path = write_export(tmp_path / "e", [
        photo(1, "Альбом"), photo(2), photo(3),  # one album: a caption, then items without text
        photo(4, "Ещё пост"), photo(5),  # a second caption opens a second album
    ], photo_files(1, 2, 3, 4, 5))  # fmt: skip
    run_import(routes, path)
    stored = posts(routes)
    assert [json.loads(p["source_msg_ids"]) for p in stored] == [[1, 2, 3], [4, 5]]
    assert [p["text_html"] for p in stored] == ["Альбом", "Ещё пост"]


def test_forwarded_posts_of_one_second_are_never_merged_across_origins(routes, tmp_path):
    path = write_export(tmp_path / "e", [
        photo(1, "Новость от РИА", forwarded_from="РИА Новости"),
        photo(2, "Новость от ТАСС", forwarded_from="ТАСС"),
        photo(3, "", forwarded_from="Коммерсант"),  # no text of its own, but from another origin
        photo(4, "Два фото", forwarded_from="ТАСС"), photo(5, "", forwarded_from="ТАСС"),  # one album of one origin
    ], photo_files(1, 2, 3, 4, 5))  # fmt: skip
    run_import(routes, path)
    stored = posts(routes)
    assert [json.loads(p["source_msg_ids"]) for p in stored] == [[1], [2], [3], [4, 5]]
    assert [(p["text_html"], p["forward_name"]) for p in stored] == [
        ("Новость от РИА", "РИА Новости"), ("Новость от ТАСС", "ТАСС"), ("", "Коммерсант"), ("Два фото", "ТАСС"),
    ]  # fmt: skip


MEDIA_EXPORT = [
    {"id": 1, "file": "stickers/s.webp", "media_type": "sticker", "sticker_emoji": "😂", "width": 512, "height": 512,
     "text": ""},
    {"id": 2, "file": "round_video_messages/r.mp4", "media_type": "video_message", "mime_type": "video/mp4",
     "duration_seconds": 12, "width": 384, "height": 384, "text": ""},
    {"id": 3, "file": "voice_messages/v.ogg", "media_type": "voice_message", "mime_type": "audio/ogg",
     "duration_seconds": 7, "text": "Голосовое"},
    {"id": 4, "file": "video_files/g.mp4", "media_type": "animation", "mime_type": "video/mp4", "width": 320,
     "height": 240, "duration_seconds": 3, "text": "Гифка"},
    {"id": 5, "file": "files/song.mp3", "file_name": "song.mp3", "media_type": "audio_file", "mime_type": "audio/mpeg",
     "performer": "Кино", "title": "Группа крови", "duration_seconds": 285, "text": "Песня"},
    {"id": 6, "file": "video_files/v.mp4", "media_type": "video_file", "mime_type": "video/mp4", "width": 1280,
     "height": 720, "duration_seconds": 95, "text": "Видео"},
    {"id": 7, "photo": "photos/spoiler.jpg", "width": 800, "height": 600, "media_spoiler": True, "text": "Спойлер"},
    {"id": 8, "paid_stars_amount": 50, "text": "Платный пост: фото за звёзды"},
    {"id": 9, "file": "files/report.pdf", "file_name": "Отчёт 2024.pdf", "mime_type": "application/pdf",
     "text": "Отчёт"},
]  # fmt: skip
MEDIA_FILES = {
    "stickers/s.webp": b"RIFF webp", "round_video_messages/r.mp4": b"round", "voice_messages/v.ogg": b"OggS",
    "video_files/g.mp4": b"gif as mp4", "files/song.mp3": b"ID3 song", "video_files/v.mp4": b"video",
    "photos/spoiler.jpg": b"jpeg spoiler", "files/report.pdf": b"%PDF",
}  # fmt: skip


def media_export(folder: Path) -> Path:
    return write_export(folder, [dict(m, unix=1717225200) for m in MEDIA_EXPORT], MEDIA_FILES)


def test_every_media_kind_is_imported_as_what_it_is_with_its_attributes(routes, tmp_path):
    report = run_import(routes, media_export(tmp_path / "e"))
    stored = posts(routes)
    assert len(stored) == 9  # none merged: no kind here shares an album with the one before it
    rows = {p["source_msg_id"]: media_of(routes, p["id"]) for p in stored}
    assert [rows[i][0]["kind"] for i in (1, 2, 3, 4, 5, 6, 7, 9)] == [
        "sticker", "video_note", "voice", "animation", "audio", "video", "photo", "document"]  # fmt: skip
    sticker, round_video, voice, gif, audio, video, spoiler, pdf = (rows[i][0] for i in (1, 2, 3, 4, 5, 6, 7, 9))
    assert (sticker["mime"], sticker["emoji"], sticker["width"]) == ("image/webp", "😂", 512)
    assert (round_video["duration"], round_video["width"], round_video["height"]) == (12, 384, 384)
    assert voice["duration"] == 7 and gif["duration"] == 3
    assert (audio["title"], audio["performer"], audio["duration"], audio["file_name"]) == (
        "Группа крови", "Кино", 285, "song.mp3")  # fmt: skip
    assert (video["width"], video["height"], video["duration"]) == (1280, 720, 95)
    assert spoiler["spoiler"] == 1 and sticker["spoiler"] == 0
    assert pdf["file_name"] == "Отчёт 2024.pdf"
    paid = next(p for p in stored if p["source_msg_id"] == 8)
    assert paid["state"] == "filtered" and paid["state_reason"].startswith("paid media (50 stars)")
    assert rows[8] == []
    assert report.counts.filtered == 1 and "paid media (50 stars)" in " ".join(report.lines())


def test_an_export_of_one_message_says_one_message(routes, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(ASSETS / "export_basic", folder)
    data = json.loads((folder / "result.json").read_text())
    data["messages"] = [m for m in data["messages"] if m["id"] == 2]
    (folder / "result.json").write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["import", str(folder), "--source", "@donor_export"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert ": 1 message, 1 post" in result.output and "1 messages" not in result.output
