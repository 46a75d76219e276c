"""`contentq login --status`, `sources list/resolve`, `collect [--now]` with a scripted Telegram."""

from __future__ import annotations

import json

import pytest
from telethon import errors
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.errors import ContentqError
from contentq.integrations.telegram.client import write_session
from tests.collect_helpers import ROUTES
from tests.fake_telegram import FakeTelegram

runner = CliRunner()


def json_out(result) -> object:
    text = result.stdout
    return json.loads(text[min(i for i in (text.find("["), text.find("{")) if i >= 0) :])


@pytest.fixture
def fake(rt, monkeypatch) -> FakeTelegram:
    (rt.settings.home / "contentq.toml").write_text(ROUTES)
    tg = FakeTelegram()
    tg.add_channel("@donor_a", 111, "Donor A")
    tg.add_channel("@donor_b", 222, "Donor B")
    monkeypatch.setattr("contentq.integrations.telegram.client.build_gateways", lambda runtime, profiles: tg)
    return tg


def test_sources_list_shows_every_source_with_its_state(rt, fake):
    fake.add_message("@donor_a", 1, "hello")
    assert runner.invoke(app, ["collect", "--now", "@donor_a"]).exit_code == 0
    rows = json_out(runner.invoke(app, ["sources", "list", "--json"]))
    assert [r["source"] for r in rows] == ["@donor_a", "@donor_b"]
    a, b = rows
    assert (a["route"], a["id"], a["last_message_id"], a["collected"]) == ("news", 111, 1, 1)
    assert a["last_run"] and a["error"] is None
    assert b["id"] is None and b["last_run"] is None
    table = runner.invoke(app, ["sources", "list"], env={"COLUMNS": "200"})
    assert "@donor_b" in table.output and "Donor A" in table.output


def test_sources_resolve_caches_ids(rt, fake):
    result = runner.invoke(app, ["sources", "resolve", "--json"])
    assert result.exit_code == 0, result.output
    assert [(r["source"], r["id"]) for r in json_out(result)] == [("@donor_a", 111), ("@donor_b", 222)]
    assert rt.store.scalar("SELECT tg_id FROM channels WHERE ref = '@donor_b'") == 222
    runner.invoke(app, ["sources", "resolve"])
    assert [n for n, _ in fake.calls].count("resolve") == 2  # cached: not resolved again


def test_collect_enqueues_one_job_per_source(rt, fake):
    result = runner.invoke(app, ["collect", "--json"])
    assert result.exit_code == 0, result.output
    assert [(r["source"], r["job"]) for r in json_out(result)] == [
        ("@donor_a", "collect-donor_a"), ("@donor_b", "collect-donor_b")
    ]  # fmt: skip
    jobs = rt.store.query("SELECT * FROM jobs WHERE kind = 'collect' ORDER BY id")
    assert [(j["queue"], j["status"], json.loads(j["payload"])) for j in jobs] == [
        ("collect", "queued", {"source": "@donor_a"}), ("collect", "queued", {"source": "@donor_b"})
    ]  # fmt: skip
    again = json_out(runner.invoke(app, ["collect", "--json", "https://t.me/donor_a"]))
    assert again == [{"source": "@donor_a", "job": "collect-donor_a", "status": "queued", "already": True}]


def test_collect_rejects_a_source_that_no_route_has(rt, fake):
    result = runner.invoke(app, ["collect", "@nobody"])
    assert isinstance(result.exception, ContentqError)
    assert "not a source of any route: @nobody" in str(result.exception)


def test_collect_now_runs_in_the_foreground(rt, fake):
    fake.add_message("@donor_a", 1, "one")
    fake.add_message("@donor_a", 2, "two")
    result = runner.invoke(app, ["collect", "--now", "@donor_a", "--json"])
    assert result.exit_code == 0, result.output
    assert json_out(result) == [
        {"source": "@donor_a", "cursor": 2, "fetched": 2, "collected": 2, "duplicate": 0, "filtered": 0,
         "reconnects": 0, "flood_waits": 0, "already_stored": 0, "footer_stripped": 0, "filtered_reasons": {},
         "near_duplicates": [], "media_not_downloaded": 0, "held_back": 0, "cut": 0, "footer": [],
         "summary": ["collected 2"]}
    ]  # fmt: skip
    rewrites = rt.store.query("SELECT parent_id FROM jobs WHERE kind = 'rewrite'")
    assert len(rewrites) == 2 and rewrites[0]["parent_id"] is None


def test_collect_now_without_a_session_prints_only_the_error(rt, monkeypatch):
    (rt.settings.home / "contentq.toml").write_text(ROUTES)
    monkeypatch.setenv("CONTENTQ_TG_API_ID", "1")
    monkeypatch.setenv("CONTENTQ_TG_API_HASH", "abcdef0123456789")
    from contentq.settings import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["collect", "--now"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "no Telegram session: run `contentq login`" in result.output
    assert "collected" not in result.output and "nothing" not in result.output.lower()  # no empty table
    assert "0/?" not in result.output and "collect @donor_a" not in result.output  # no progress bar
    assert rt.store.scalar("SELECT COUNT(*) FROM posts") == 0


def test_collect_now_under_flood_wait_queues_a_job_for_later(rt, fake):
    fake.fail_next("fetch_messages", errors.FloodWaitError(request=None, capture=900))
    result = runner.invoke(app, ["collect", "--now", "@donor_a"])
    assert result.exit_code == 1
    job = rt.store.one("SELECT * FROM jobs WHERE kind = 'collect'")
    assert job["status"] == "queued" and job["next_retry_at"]


def test_login_status_shows_the_account(rt, fake, monkeypatch):
    result = runner.invoke(app, ["login", "--status"])
    assert isinstance(result.exception, ContentqError) and "run `contentq login`" in str(result.exception)
    write_session(rt.settings.session_path, "1SESSION")
    result = runner.invoke(app, ["login", "--status", "--json"])
    assert result.exit_code == 0, result.output
    data = json_out(result)
    assert data["username"] == "operator" and data["session"] == str(rt.settings.session_path)
    assert data["phone"].endswith("0000") and "1000000" not in data["phone"]
