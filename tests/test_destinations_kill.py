"""Exactly once per destination without idempotency keys, through real kills: a worker process SIGKILLed while
its request to X or Instagram hangs (after the platform stored it, or before it took effect), another worker
takes the job over; the platform (a file-backed fake over HTTP) ends with the post exactly once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contentq import lifecycle
from contentq.clock import iso, now
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.settings import Settings
from contentq.store.deliveries import deliveries_of
from contentq.store.posts import get_post
from tests.conftest import start_worker, wait_for
from tests.destination_helpers import IG_ENV, X_ENV, StaticServer
from tests.fake_instagram import FakeInstagram
from tests.fake_x import FakeX
from tests.publish_helpers import add_post, write_config
from tests.shared_telegram import visible


@pytest.fixture
def platforms(tmp_path: Path, home: Path) -> Iterator[dict[str, Any]]:
    x, ig, static = FakeX(tmp_path / "x.db"), FakeInstagram(tmp_path / "ig.db"), StaticServer(home / "media")
    x.start()
    ig.start()
    yield {"x": x, "ig": ig, "static": static, "tg_db": tmp_path / "telegram.db"}
    x.stop()
    ig.stop()
    static.stop()


def worker_env(platforms: dict[str, Any]) -> dict[str, str]:
    return {
        **X_ENV, **IG_ENV,
        "CONTENTQ_TG_GATEWAY": "tests.shared_telegram:gateway_from_env",
        "CONTENTQ_FAKE_TG_DB": str(platforms["tg_db"]),
        "CONTENTQ_PUBLISH_MIN_INTERVAL": "0", "CONTENTQ_PUBLISH_ACCOUNT_BUDGET": "0",
        "CONTENTQ_PUBLISH_BACKOFF_BASE": "1", "CONTENTQ_WORKER_RECONCILE_INTERVAL": "2",
        "CONTENTQ_INSTAGRAM_POLL_SECONDS": "0.1", "CONTENTQ_LOG_LEVEL": "WARNING",
    }  # fmt: skip


def config(platforms: dict[str, Any]) -> str:
    return f"""
[routes.news]
sources = ["@donor"]
destinations = ["telegram:@chan", "x:main", "instagram:brand"]
rewriter = "none"
[routes.news.schedule]
asap = true
[routes.news.instagram]
public_media_url = "{platforms["static"].url}"
[accounts.x.main]
api_base = "{platforms["x"].base_url}"
[accounts.instagram.brand]
user_id = "17841400000000001"
api_base = "{platforms["ig"].base_url}"
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("fake", "endpoint", "hang"),
    [
        ("x", "tweets", "hang_after"),
        ("x", "tweets", "hang_before"),
        ("ig", "media_publish", "hang_after"),
        ("ig", "media_publish", "hang_before"),
    ],
)
def test_a_worker_killed_mid_request_leaves_the_post_once_on_every_destination(
    rt: Runtime, settings: Settings, home: Path, tmp_path: Path, platforms: dict[str, Any], fake: str, endpoint: str,
    hang: str,
) -> None:  # fmt: skip
    write_config(home, config(platforms))
    marker = tmp_path / "hung"
    platforms[fake].script(endpoint, hang, seconds=3600, marker=marker)
    post_id = add_post(rt, "Killed while it was sent", state="scheduled", scheduled_at=iso(now()))
    enqueue(rt, "publish", str(post_id), {}, post_id=post_id)
    env = worker_env(platforms)
    first = start_worker(settings, "publish", **env)
    second = None
    try:
        wait_for(marker.exists, timeout=40, what="the request to hang")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second = start_worker(settings, "publish", **env)
        wait_for(lambda: get_post(rt.store, post_id)["state"] in ("published", "failed"), timeout=60,
                 what="the post to settle")  # fmt: skip
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
    post = get_post(rt.store, post_id)
    assert post["state"] == "published", post["state_reason"]
    assert [t["sent_text"] for t in platforms["x"].tweets()] == ["Killed while it was sent"]
    assert [m["caption"] for m in platforms["ig"].media()] == ["Killed while it was sent"]
    assert [m["html"] for m in visible(platforms["tg_db"], "@chan")] == ["Killed while it was sent"]
    assert {d["state"] for d in deliveries_of(rt.store, post_id)} == {"published"}
    # The post moved through the lifecycle only, by the jobs (the one that settled the killed delivery included).
    moves = lifecycle.history(rt.store, post_id)[1:]  # after add_post's own entry
    assert [m["event"] for m in moves] == ["fanned_out", "delivered"]
    assert all(lifecycle.allowed(m) and m["actor"].startswith("job:") for m in moves)
