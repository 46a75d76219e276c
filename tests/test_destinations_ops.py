"""Operating destinations: the token bucket per account (and `queue status` showing it), `contentq doctor`'s
checks of the accounts and the public media URL, each destination's version in the outbox dry run, and a
delivery stranded by a process that died settled by the reconcile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now, parse
from contentq.ops.destinations_check import check_destinations
from contentq.ops.doctor import run_doctor
from contentq.ops.probe import FAIL, OK
from contentq.publish.core import dry_run
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.reconcile import reconcile
from contentq.runtime.tracking import enqueue
from contentq.runtime.worker import run_worker
from contentq.settings import get_settings, load_settings
from contentq.store.deliveries import deliveries_of
from tests.conftest import drain
from tests.destination_helpers import IG_ENV, X_ENV, StaticServer, delivery, routes_toml
from tests.fake_instagram import FakeInstagram
from tests.fake_x import FakeX
from tests.publish_helpers import add_media, add_post, write_config

runner = CliRunner()


@pytest.fixture
def world(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    x, ig, static = FakeX(tmp_path / "x.db"), FakeInstagram(tmp_path / "ig.db"), StaticServer(home / "media")
    x.start()
    ig.start()
    for key, value in {**X_ENV, **IG_ENV, "CONTENTQ_PUBLISH_BACKOFF_BASE": "1",
                       "CONTENTQ_INSTAGRAM_POLL_SECONDS": "0.05"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield {"x": x, "ig": ig, "static": static, "home": home}
    x.stop()
    ig.stop()
    static.stop()


def runtime_for(home: Path, config: str) -> Runtime:
    write_config(home, config)
    rt = Runtime(load_settings(home=home))
    set_process_runtime(rt)
    return rt


def test_the_token_bucket_holds_back_the_send_over_its_burst_and_queue_status_shows_when_it_frees(
    world: dict[str, Any],
) -> None:
    config = routes_toml(["x:main"], x_api=world["x"].base_url, x_limit="limit = { burst = 2, per_hour = 360 }")
    rt = runtime_for(world["home"], config)
    try:
        posts = [add_post(rt, f"Post number {i}", state="scheduled", scheduled_at=iso(now())) for i in range(3)]
        for post_id in posts:
            enqueue(rt, "publish", str(post_id), {}, post_id=post_id)
        run_worker(rt, ["publish"], burst=True)
        assert len(world["x"].tweets()) == 2
        waiting = [d for p in posts for d in deliveries_of(rt.store, p) if d["state"] == "scheduled"]
        assert len(waiting) == 1 and "rate limit of x:main (2 at once, 360 an hour)" in waiting[0]["state_reason"]
        assert 5 < (parse(waiting[0]["due_at"]) - now()).total_seconds() <= 10  # one token every 10 s

        status = json.loads(runner.invoke(app, ["queue", "status", "--json"]).output)
        (limits,) = status["destinations"]
        assert limits["destination"] == "x:main" and limits["burst"] == 2 and limits["tokens"] < 1
        assert limits["waiting"] == 1 and parse(limits["next_free"]) > now()
        shown = runner.invoke(app, ["queue", "status"], env={"COLUMNS": "200"})
        assert "destination limits" in shown.output and "x:main" in shown.output
        from tests.web_helpers import client

        tc = client(rt)
        (panel,) = tc.get("/api/dashboard").json()["destination_limits"]
        assert panel["destination"] == "x:main" and panel["waiting"] == 1
        assert 'data-destination="x:main"' in tc.get("/").text

        drain(rt, "publish", timeout=30)
        assert len(world["x"].tweets()) == 3
    finally:
        rt.close()


def test_doctor_checks_each_account_and_the_public_media_url(world: dict[str, Any], home: Path) -> None:
    config = routes_toml(
        ["x:main", "instagram:brand"], x_api=world["x"].base_url, ig_api=world["ig"].base_url,
        public_url=world["static"].url,
    )  # fmt: skip
    rt = runtime_for(home, config)
    try:
        probes = {p.check: p for p in check_destinations(rt.settings, routes_config(rt))}
        assert probes["destination x:main"].status == OK and "@main_acct" in probes["destination x:main"].detail
        assert probes["destination instagram:brand"].status == OK
        assert "@brand_account" in probes["destination instagram:brand"].detail
        assert probes["public media (news)"].status == OK
        assert not list((home / "media" / "public").iterdir())  # the probe file is gone
        # Wired into `contentq doctor`.
        assert {"destination x:main", "destination instagram:brand", "public media (news)"} <= {
            p.check for p in run_doctor(rt.settings, llm_timeout=0.5)
        }
    finally:
        rt.close()


def test_doctor_says_what_is_wrong_and_how_to_fix_it(
    world: dict[str, Any], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = routes_toml(
        ["x:main", "instagram:brand"], x_api=world["x"].base_url, ig_api=world["ig"].base_url,
        public_url="http://127.0.0.1:9/not-served",
    )  # fmt: skip
    monkeypatch.delenv("CONTENTQ_X_MAIN_CONSUMER_KEY")
    monkeypatch.setenv("CONTENTQ_INSTAGRAM_BRAND_ACCESS_TOKEN", "IGQVJ-revoked-token-value")
    rt = runtime_for(home, config)
    try:
        probes = {p.check: p for p in check_destinations(rt.settings, routes_config(rt))}
        x = probes["destination x:main"]
        assert x.status == FAIL and "CONTENTQ_X_MAIN_CONSUMER_KEY unset" in x.detail and ".env" in x.fix
        ig = probes["destination instagram:brand"]
        assert ig.status == FAIL and "renew the long-lived token" in ig.fix
        assert "IGQVJ-revoked-token-value" not in ig.detail
        media = probes["public media (news)"]
        assert media.status == FAIL and "does not serve CONTENTQ_HOME/media" in media.detail
    finally:
        rt.close()


def test_the_dry_run_shows_each_destinations_version(world: dict[str, Any], home: Path) -> None:
    config = routes_toml(
        ["telegram:@mychan", "x:main", "instagram:brand"], x_api=world["x"].base_url, ig_api=world["ig"].base_url,
        public_url=world["static"].url,
    )  # fmt: skip
    rt = runtime_for(home, config)
    try:
        long_text = " ".join(f"Sentence number {i} of a long post." for i in range(60))
        post_id = add_post(rt, f'{long_text} <a href="https://example.com">Source</a>', state="rewritten")
        for i in range(5):
            add_media(rt, post_id, position=i)
        folder = dry_run(rt, post_id)
        versions = {v["destination"]: v for v in json.loads((folder / "destinations.json").read_text())}
        tweets = versions["x:main"]["tweets"]
        assert len(tweets) > 1 and all(t["weight"] <= 280 for t in tweets)
        assert [len(t["images"]) for t in tweets[:2]] == [4, 1]
        assert "Source (https://example.com)" in tweets[-1]["text"]
        ig = versions["instagram:brand"]
        assert ig["caption"].endswith("Link in bio") and "https://" not in ig["caption"] and len(ig["images"]) == 5
        page = (folder / "destinations.html").read_text()
        assert 'data-destination="x:main"' in page and "Link in bio" in page
        assert all((folder / name).exists() for name in ig["images"])
        assert (folder / "post.html").exists()  # the Telegram preview as before
        assert world["x"].tweets() == [] and world["ig"].media() == []  # a dry run sends nothing
    finally:
        rt.close()


def test_a_delivery_stranded_by_a_dead_process_is_settled_by_the_reconcile(world: dict[str, Any], home: Path) -> None:
    rt = runtime_for(home, routes_toml(["x:main"], x_api=world["x"].base_url))
    try:
        post_id = add_post(rt, "Stranded", state="scheduled", scheduled_at=iso(now()))
        enqueue(rt, "publish", str(post_id), {}, post_id=post_id)
        drain(rt, "publish")
        row = delivery(rt, post_id, "x:main")
        assert row["state"] == "published"
        # As if the deliver job had ended failed mid-send and its process died before its hook ran.
        rt.store.execute("UPDATE deliveries SET state = 'publishing', updated_at = ? WHERE id = ?",
                         ("2000-01-01T00:00:00.000+00:00", row["id"]))  # fmt: skip
        rt.store.execute("UPDATE jobs SET status = 'failed', error = 'worker died' WHERE kind = 'deliver'")
        actions = reconcile(rt)
        assert any("its deliver job ended failed" in a["found"] for a in actions)
        drain(rt, "publish")
        settled = delivery(rt, post_id, "x:main")
        assert settled["state"] == "published" and len(world["x"].tweets()) == 1  # found on the account, not resent
        assert reconcile(rt) == []
    finally:
        rt.close()


def test_a_route_publishing_only_to_x_does_not_need_a_telegram_login(home: Path) -> None:
    from contentq.ops.doctor import telegram_need
    from contentq.ops.probe import WARN
    from contentq.routes import parse_routes

    routes = parse_routes({"routes": {"x_only": {"sources": ["@donor"], "destinations": ["x:main"]}}})
    level, why = telegram_need(load_settings(home=home), routes)
    assert level == WARN and "collect" in why  # its sources still need Telegram to be collected, not to publish
    both = parse_routes({"routes": {"r": {"sources": ["@donor"], "destinations": ["x:main", "telegram:@c"]}}})
    assert telegram_need(load_settings(home=home), both)[0] == FAIL
