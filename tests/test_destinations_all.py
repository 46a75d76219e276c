"""The whole way: a route with Telegram + X + Instagram publishes the sample export that `contentq demo` uses
(plus one post of 6,000 characters): every post once on each destination, the long post a thread on X and a
caption within 2,200 on Instagram, the album a carousel; `posts show` lists the three deliveries with links.
Real SQLite, real Valkey and workers, fake X and Instagram over real HTTP, the in-process fake Telegram."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentq import actors, lifecycle
from contentq.cli.app import app
from contentq.intake.collect import ForegroundContext
from contentq.intake.imports import import_export
from contentq.ops.demo import export_path
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import get_settings, load_settings
from contentq.store.deliveries import deliveries_of
from tests.conftest import drain
from tests.destination_helpers import IG_ENV, X_ENV, StaticServer
from tests.fake_instagram import FakeInstagram
from tests.fake_telegram import FakeTelegram
from tests.fake_x import FakeX, weight
from tests.publish_helpers import write_config
from tests.test_lifecycle import history_problems

SOURCE = "@techdigest_demo"
LONG_PARAGRAPH = (
    "Долгое чтение о том, как устроены очереди задач и почему SQLite остаётся источником истины. "
    "Каждое предложение здесь заканчивается точкой, чтобы тред резался между предложениями. "
)


def routes(x_api: str, ig_api: str, public_url: str) -> str:
    return f"""
[routes.multi]
sources = ["{SOURCE}"]
destinations = ["telegram:@contentq_demo", "x:main", "instagram:brand"]
rewriter = "clean"
[routes.multi.schedule]
asap = true
[routes.multi.instagram]
public_media_url = "{public_url}"
[accounts.x.main]
api_base = "{x_api}"
[accounts.instagram.brand]
user_id = "17841400000000001"
api_base = "{ig_api}"
"""


def export_with_a_long_post(tmp: Path) -> tuple[Path, str]:
    """The shipped sample export, its photos, and one more message of about 6,000 characters."""
    folder = tmp / "export"
    shutil.copytree(export_path().parent, folder)
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    text = "\n\n".join(LONG_PARAGRAPH * 3 for _ in range(12))[:6000].rsplit(". ", 1)[0] + "."
    last = data["messages"][-1]
    data["messages"].append(
        {**last, "id": 14, "date": "2024-05-05T11:00:00", "date_unixtime": "1714906800", "text": text,
         "text_entities": [{"type": "plain", "text": text}]}
    )  # fmt: skip
    (folder / "result.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder / "result.json", text


@pytest.fixture
def world(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    x = FakeX(tmp_path / "x.db")
    ig = FakeInstagram(tmp_path / "ig.db")
    static = StaticServer(home / "media")
    x.start()
    ig.start()
    settings = {"PUBLISH_BACKOFF_BASE": "1", "PUBLISH_MIN_INTERVAL": "0", "PUBLISH_ACCOUNT_BUDGET": "0",
                "INSTAGRAM_POLL_SECONDS": "0.05"}  # fmt: skip
    for key, value in {**{f"CONTENTQ_{k}": v for k, v in settings.items()}, **X_ENV, **IG_ENV}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    write_config(home, routes(x.base_url, ig.base_url, static.url))
    rt = Runtime(load_settings(home=home))
    set_process_runtime(rt)
    tg = FakeTelegram(auto_channels=True)
    rt.services["telegram"] = tg
    yield {"rt": rt, "x": x, "ig": ig, "tg": tg}
    rt.close()
    x.stop()
    ig.stop()
    static.stop()


@pytest.mark.timeout(240)
def test_the_sample_export_goes_out_once_on_telegram_x_and_instagram(world: dict, tmp_path: Path) -> None:
    rt, x, ig, tg = world["rt"], world["x"], world["ig"], world["tg"]
    path, long_text = export_with_a_long_post(tmp_path)
    with actors.acting_as(actors.cli()):  # as `contentq import` does
        report = import_export(ForegroundContext(rt), path, SOURCE, route_name="multi")
    assert report.posts == 10  # 9 posts of the sample (an album of 3 is one) and the long one
    drain(rt, "rewrite", "collect", "imagegen", "maintenance", timeout=60)
    drain(rt, "publish", timeout=120)

    posts = rt.store.query("SELECT * FROM posts ORDER BY id")
    assert len(posts) == 10 and {p["state"] for p in posts} == {"published"}, [p["state_reason"] for p in posts]
    for post in posts:
        rows = deliveries_of(rt.store, post["id"])
        assert [(d["destination"], d["state"]) for d in rows] == [
            ("telegram:@contentq_demo", "published"), ("x:main", "published"), ("instagram:brand", "published"),
        ]  # fmt: skip
        assert all(d["link"] for d in rows)

    # Telegram: one batch per post; X: one thread per post (a first tweet each); Instagram: one media per post.
    sent = tg.visible("@contentq_demo")
    assert len({m.message_id for m in sent}) == len(sent)
    tweets = x.tweets()
    threads = [t for t in tweets if t["reply_to"] is None]
    assert len(threads) == 10 and all(weight(t["sent_text"]) <= 280 for t in tweets)
    media = ig.media()
    assert len(media) == 10 and all(len(m["caption"]) <= 2200 for m in media)
    assert len({m["caption"] for m in media}) == 10  # ten different posts, none twice

    by_msg = {p["source_msg_id"]: p for p in posts}
    long_post = by_msg[14]
    x_row, ig_row = (d for d in deliveries_of(rt.store, long_post["id"]) if d["platform"] != "telegram")
    thread = json.loads(x_row["platform_ids"])
    assert len(thread) >= 22  # 6,000 characters at 280 at most per tweet
    chain = {str(t["id"]): t for t in tweets}
    assert [chain[i]["reply_to"] for i in thread] == [None, *thread[:-1]]
    long_caption = next(m["caption"] for m in media if str(m["id"]) == json.loads(ig_row["platform_ids"])[0])
    assert len(long_caption) <= 2200 and long_caption.endswith("…")
    assert "caption cut to" in ig_row["notes"]

    album = by_msg[5]
    album_media = next(
        m for m in media for d in deliveries_of(rt.store, album["id"])
        if d["platform"] == "instagram" and str(m["id"]) == json.loads(d["platform_ids"])[0]
    )  # fmt: skip
    assert album_media["media_type"] == "CAROUSEL_ALBUM" and album_media["children"] == 3
    album_tweet = next(t for t in threads if t["id"] == int(json.loads(
        next(d for d in deliveries_of(rt.store, album["id"]) if d["platform"] == "x")["platform_ids"])[0]))  # fmt: skip
    assert len(album_tweet["media"].split(",")) == 3

    # Every post moved through the lifecycle only: lawful moves, each by a named actor, ending where the post is.
    assert history_problems(rt.settings.db_path) == []
    events = [h["event"] for h in lifecycle.history(rt.store, album["id"])]
    assert events[-2:] == ["fanned_out", "delivered"]

    shown = CliRunner().invoke(app, ["posts", "show", str(album["id"])], env={"COLUMNS": "220"})
    assert shown.exit_code == 0, shown.output
    for row in deliveries_of(rt.store, album["id"]):
        assert row["destination"] in shown.output and row["link"] in shown.output
