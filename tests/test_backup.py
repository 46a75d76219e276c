"""Backups and restores on real SQLite files, real worker processes and the embedded Valkey: `db backup` while
writers commit, rotation, `db restore` (refusals, the atomic swap, the WAL), posts sent after the backup found in
the channel and not sent twice, `db check`, doctor and alerts on an old backup, the Litestream program."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from typer.testing import CliRunner

from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.dispatch import dispatch
from contentq.errors import ContentqError
from contentq.ops import backup as backup_core
from contentq.ops.restore import restore
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import Settings, get_settings, load_settings
from contentq.store.backups import list_backups
from contentq.store.db import open_store
from contentq.store.jobs import job_events
from contentq.store.posts import get_post
from tests.conftest import drain, start_worker, wait_for
from tests.publish_helpers import add_post, fake, route_toml, write_config

runner = CliRunner()


@pytest.fixture
def prt(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A publishing runtime with quick retries and no rate limits, through the fake Telegram."""
    for key, value in {"PUBLISH_BACKOFF_BASE": "1", "PUBLISH_MIN_INTERVAL": "0", "PUBLISH_ACCOUNT_BUDGET": "0"}.items():
        monkeypatch.setenv(f"CONTENTQ_{key}", value)
    get_settings.cache_clear()
    write_config(home, route_toml())
    runtime = Runtime(load_settings(home=home))
    set_process_runtime(runtime)
    yield runtime
    runtime.close()


def gunzipped(path: Path, into: Path) -> Path:
    with gzip.open(path, "rb") as src:
        into.write_bytes(src.read())
    return into


def reopen(settings: Settings, tg: object) -> Runtime:
    """The runtime of the processes that start after a restore (with the same fake Telegram)."""
    runtime = Runtime(settings)
    runtime.services["telegram"] = tg
    set_process_runtime(runtime)
    return runtime


# Restoring a database whose posts went out after the backup ---------------------------------------------------


def _published_after_the_backup(prt: Runtime, text: str) -> tuple[int, Path, object]:
    """A post scheduled and dispatched, backed up, then published: the backup has it scheduled with its publish
    job queued, the channel has its message."""
    tg = fake(prt)
    post_id = add_post(prt, text, state="scheduled", scheduled_at=iso(now()))
    dispatch(prt)
    result = backup_core.make_backup(prt.settings, prt.store)
    drain(prt, "publish")
    assert [m.html for m in tg.visible("@mychan")] == [text]
    prt.services.pop("telegram")  # Telegram outlives the processes
    prt.close()  # the workers stop before a restore
    return post_id, result.path, tg


def test_a_post_sent_after_the_backup_is_found_in_the_channel_and_not_sent_again(prt: Runtime) -> None:
    post_id, backup, tg = _published_after_the_backup(prt, "Sent after the backup")
    first = tg.sent[0].message_id  # type: ignore[attr-defined]
    result = restore(prt.settings, backup)
    (found,) = [r["found"] for r in result.reconciled]
    assert "finished in redis but queued in sqlite" in found.lower()
    # Telegram's memory of random ids is not something to count on days later: the channel decides.
    tg._used_random_ids.clear()  # type: ignore[attr-defined]
    rt = reopen(prt.settings, tg)
    try:
        assert get_post(rt.store, post_id)["state"] == "scheduled"
        drain(rt, "publish")
        assert [m.html for m in tg.visible("@mychan")] == ["Sent after the backup"]  # type: ignore[attr-defined]
        post = get_post(rt.store, post_id)
        assert post["state"] == "published" and json.loads(post["message_ids"]) == [first]
        job = rt.store.one("SELECT id FROM jobs WHERE post_id = ? ORDER BY rowid DESC", (post_id,))
        assert job is not None
        messages = [e["message"] for e in job_events(rt.store, job["id"])]
        assert any("sent after the backup this database was restored from" in m for m in messages), messages
    finally:
        rt.close()


def test_a_refused_resend_after_a_restore_is_settled_with_its_message_ids(prt: Runtime) -> None:
    """Telegram still knows the random ids and refuses the resend; the message, sent long before the restore,
    is found from the backup's time, not only from the new attempt's."""
    post_id, backup, tg = _published_after_the_backup(prt, "Refused again")
    sent = tg.sent[0]  # type: ignore[attr-defined]
    tg.recent_messages = _blind_once(tg)  # type: ignore[attr-defined]
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=30), tick=True):  # restored half an hour later
        restore(prt.settings, backup)
        rt = reopen(prt.settings, tg)
        drain(rt, "publish")
    try:
        assert len(tg.visible("@mychan")) == 1  # type: ignore[attr-defined]
        post = get_post(rt.store, post_id)
        assert post["state"] == "published" and json.loads(post["message_ids"]) == [sent.message_id]
        assert post["state_reason"] is None  # no "message ids unknown" note, no alert
    finally:
        rt.close()


def _blind_once(tg: object):  # type: ignore[no-untyped-def]
    """recent_messages misses the message once (the look before the send), so the send is what finds it."""
    real = tg.recent_messages  # type: ignore[attr-defined]
    state = {"hidden": False}

    def recent(target, limit=20):  # type: ignore[no-untyped-def]
        if not state["hidden"]:
            state["hidden"] = True
            return []
        return real(target, limit)

    return recent
