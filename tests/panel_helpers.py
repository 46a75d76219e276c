"""A panel with something on every page: routes, posts in each state (an album among them), failed, queued and
finished jobs, workers alive, dead and stopped, sources with a cursor, an error, a listener and a learned
footer; served by uvicorn in a thread for a whole test module (one server, one browser per module)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from contentq.clock import iso
from contentq.content.footer import Footer
from contentq.flow.channels import ensure_channel
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.runtime.tracking import enqueue
from contentq.settings import get_settings, load_settings
from contentq.store.footers import save_footer
from contentq.store.listeners import beat as listener_beat
from contentq.store.listeners import start_listener
from contentq.store.workers import mark_stopped, register_worker
from tests.publish_helpers import add_media, add_post, route_toml, write_config
from tests.web_helpers import LONG_CAPTION, failed_job, photo, serving

TEXTS = {
    "awaiting_approval": "Запуск ракеты перенесли на <b>пятницу</b>: погода",
    "scheduled": "The quarterly report is out: revenue up 12 %",
    "published": "Weekend market opens on Saturday with local farmers",
    "rejected": "An off-topic post about cats",
    "failed": "A post whose publish failed: <i>network</i>",
    "collected": "Fresh news from the donor, not rewritten yet",
    "rewritten": "Rocket launch moved to Friday because of the weather",
}


def seed(rt: Runtime) -> dict[str, int]:
    """Something on every page; returns the posts' ids by name."""
    write_config(
        rt.settings.home,
        route_toml(
            extra='approval = true\nlong_text = "split"',
            sources='["@donor", "@other"]',
            schedule='slots = ["09:00", "18:00"]',
        ),
    )
    ids = {state: add_post(rt, html, state=state, title=html[:30]) for state, html in TEXTS.items()}
    rt.store.execute("UPDATE posts SET link = 'https://t.me/mychan/7', published_at = ? WHERE id = ?",
                     (iso(), ids["published"]))  # fmt: skip
    rt.store.execute(
        "UPDATE posts SET scheduled_at = '2030-06-01T09:00:00.000+00:00' WHERE id = ?", (ids["scheduled"],)
    )
    ids["album"] = album = add_post(rt, LONG_CAPTION, state="awaiting_approval", kind="album", title="Launch day")
    for position, colour in enumerate([(220, 80, 60), (60, 140, 220), (90, 190, 110)]):
        media_id = add_media(rt, album, position=position, data=photo(900, 600 + 100 * position, colour))
        rt.store.execute("UPDATE media SET mime = 'image/jpeg' WHERE id = ?", (media_id,))
    for n in range(3):
        failed_job(rt, f"broken-{n}", error=f"Traceback (most recent call last):\n  boom {n}\nRuntimeError: boom {n}")
    enqueue(rt, "noop", "waiting")
    finished = enqueue(rt, "noop", "done")["id"]
    _workers(rt)  # before the job it ran finished: a worker's jobs end after its start (jobs done counts from it)
    rt.store.execute(
        "UPDATE jobs SET status = 'succeeded', attempts = 1, worker = 'host.1234', started_at = ?, finished_at = ?,"
        " duration_ms = 42 WHERE id = ?",
        (iso(), iso(), finished),
    )
    _sources(rt)
    rt.store.execute(
        "INSERT INTO usage (at, post_id, route, model, tokens_in, tokens_out, cost)"
        " VALUES (?, ?, 'news', 'm', 900, 200, 0.01)",
        (iso(), ids["rewritten"]),
    )
    return ids


def _workers(rt: Runtime) -> None:
    register_worker(rt.store, "host.1234", ["publish", "rewrite"])  # this process: alive
    rt.store.execute("UPDATE workers SET current_job = 'noop-waiting' WHERE name = 'host.1234'")
    register_worker(rt.store, "host.999", ["collect"])
    rt.store.execute(
        "UPDATE workers SET pid = 4194000, host = 'elsewhere', heartbeat_at = '2020-01-01T00:00:00.000+00:00'"
        " WHERE name = 'host.999'"
    )  # silent for years: dead
    register_worker(rt.store, "host.42", ["maintenance"])
    mark_stopped(rt.store, "host.42")


def _sources(rt: Runtime) -> None:
    with rt.store.transaction() as conn:
        ensure_channel(conn, "@donor")
        ensure_channel(conn, "@other")
        conn.execute(
            "UPDATE channels SET title = 'The donor', tg_id = 100200, last_message_id = 5120, collected_count = 340,"
            " duplicate_count = 12, filtered_count = 3, last_collected_at = ? WHERE ref = '@donor'",
            (iso(),),
        )
        conn.execute(
            "UPDATE channels SET last_error = 'ChannelPrivateError: the channel is private' WHERE ref = '@other'"
        )
        footer = Footer(frozenset({"subscribe"}), frozenset(), frozenset({"@donor"}), ("Subscribe: @donor",), 20)
        save_footer(conn, "@donor", footer)
    start_listener(rt.store, "listen", ["@donor"])
    listener_beat(rt.store, "listen", state="connected", connected_since=iso(), updates=("+", 17))


@contextmanager
def seeded_panel(folder: Path, valkey_url: str) -> Iterator[tuple[Runtime, str, dict[str, int]]]:
    """A CONTENTQ_HOME in `folder`, seeded, and `contentq web`'s app serving it: (runtime, base URL, post ids).
    For a module-scoped fixture: it sets the environment itself (monkeypatch is per test)."""
    home = folder / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONTENTQ_HOME", str(home))
        env.setenv("CONTENTQ_REDIS_URL", valkey_url)
        env.chdir(folder)
        redis.Redis.from_url(valkey_url).flushall()
        get_settings.cache_clear()
        # The workers' liveness window is an hour here: the seeded worker stays alive through the module.
        rt = Runtime(load_settings(home=home, worker_heartbeat_ttl=3600))
        set_process_runtime(rt)
        ids = seed(rt)
        try:
            with serving(rt) as url:
                yield rt, url, ids
        finally:
            rt.close()
            get_settings.cache_clear()
