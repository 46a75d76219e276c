"""`contentq demo` end to end in a temporary CONTENTQ_HOME: the sample export ends up cleaned in the outbox."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import contentq.settings as settings_module
from contentq.cli.app import app
from contentq.ops import demo

runner = CliRunner()

DONOR_MARKS = ("@techdigest_ru", "t.me/techdigest_chat", "Подписывайтесь", "@openai_news", "apple.com")


@pytest.fixture(autouse=True)
def _no_leaked_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    # `demo --home` remembers the flag for the process like the global flags do; keep it inside this test.
    monkeypatch.setattr(settings_module, "_overrides", {})


def db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "contentq.db")
    conn.row_factory = sqlite3.Row
    return conn


@pytest.mark.timeout(300)
def test_demo_publishes_the_cleaned_sample_to_the_outbox(home: Path) -> None:
    result = runner.invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "queue status" in result.output and str(home / "outbox" / "demo") in result.output

    conn = db(home)
    posts = conn.execute("SELECT * FROM posts ORDER BY id").fetchall()
    # 13 messages: 2 service messages skipped, 3 album items are one post.
    assert len(posts) == 9
    assert {p["state"] for p in posts} == {"published"}
    jobs = dict(conn.execute("SELECT kind, COUNT(*) FROM jobs WHERE status = 'succeeded' GROUP BY kind").fetchall())
    assert jobs == {"rewrite": 9, "imagegen": 9, "publish": 9}
    assert conn.execute("SELECT COUNT(*) FROM jobs WHERE status != 'succeeded'").fetchone()[0] == 0

    outbox = home / "outbox" / "demo"
    folders = sorted(p for p in outbox.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(folders) == 9
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        html = meta["html"]
        page = (folder / "post.html").read_text()
        assert "<b>contentq demo</b>" in html, folder  # the route's signature
        for mark in DONOR_MARKS:  # footer, donor links and mentions are gone
            assert mark not in html and mark not in page, (folder, mark)
        assert any(m["origin"] == "generated" for m in meta["media"]), f"{folder}: no card"
        for item in meta["media"]:
            assert (folder / item["file"]).stat().st_size > 0

    by_msg = {p["source_msg_id"]: p for p in posts}
    album = json.loads((outbox / str(by_msg[5]["id"]) / "meta.json").read_text())
    assert [m["origin"] for m in album["media"]] == ["donor", "donor", "donor", "generated"]
    assert len(album["parts"]) == 1 and len(album["parts"][0]["media"]) == 4  # one album
    first = json.loads((outbox / str(by_msg[2]["id"]) / "meta.json").read_text())["html"]
    assert "<strong>Apple представила M4</strong>" in first  # formatting kept
    assert "пресс-релизе" in first  # the link's words stay, the link goes
    last = json.loads((outbox / str(by_msg[12]["id"]) / "meta.json").read_text())["html"]
    assert "Обсудим в нашем чате" in last  # the route's replacement

    # Again: nothing new is imported, nothing is published twice.
    again = runner.invoke(app, ["demo", "--json"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["imported"]["collected"] == 0
    assert len(data["outbox_entries"]) == 9
    assert conn.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'publish'").fetchone()[0] == 9
    assert conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0] == 9


@pytest.mark.timeout(300)
def test_demo_in_its_own_home_leaves_user_routes_alone(home: Path, tmp_path: Path) -> None:
    routes = home / "contentq.toml"
    routes.write_text('[routes.mine]\ntarget = "@me"\nsources = ["@them"]\n')
    refused = runner.invoke(app, ["demo"])
    assert refused.exit_code == 1
    assert "--home" in str(refused.exception) or "--home" in refused.output
    assert routes.read_text().startswith("[routes.mine]")

    other = tmp_path / "demo-home"
    result = runner.invoke(app, ["demo", "--home", str(other), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["home"] == str(other)
    assert len(data["outbox_entries"]) == 9
    assert (other / "contentq.toml").read_text().count("[routes.demo]") == 1


def test_shipped_export_is_a_telegram_desktop_export() -> None:
    path = demo.export_path()
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["type"] == "public_channel" and len(data["messages"]) == 13
    photos = [m["photo"] for m in data["messages"] if "photo" in m and not m["photo"].startswith("(")]
    assert len(photos) == 4 and all((path.parent / p).is_file() for p in photos)
    assert sum(1 for m in data["messages"] if m["type"] == "service") == 2
