"""The SQLite store: migrations from empty, WAL, compare-and-set transitions, and the embedded Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import redis

from contentq import lifecycle
from contentq.clock import iso
from contentq.errors import RedisUnavailableError
from contentq.runtime import redis as redis_runtime
from contentq.runtime.redis import EmbeddedServer, connect
from contentq.settings import load_settings
from contentq.store import open_store
from contentq.store.migrations import MIGRATIONS, migration_set, migration_status


def test_migrations_apply_from_an_empty_database(tmp_path):
    store = open_store(tmp_path / "x.db")
    status = migration_status(store.db)
    assert [m["number"] for m in status] == sorted(m.number for m in MIGRATIONS)
    assert all(m["applied_at"] for m in status)
    tables = set(store.db.table_names())
    assert {"channels", "posts", "media", "jobs", "job_events", "usage", "sends", "rules"} <= tables
    assert store.scalar("PRAGMA journal_mode") == "wal"
    store.close()
    again = open_store(tmp_path / "x.db")  # reopening applies nothing twice
    assert migration_status(again.db) == status
    again.close()


def test_opening_a_migrated_database_needs_no_sqlite_utils(tmp_path):
    """The usual open checks the migration records in plain SQL: sqlite-utils (click, pluggy, numpy) stays
    unloaded, which is ~60 ms of every CLI command."""
    open_store(tmp_path / "x.db").close()
    probe = (
        "import sys\nfrom pathlib import Path\nfrom contentq.store import open_store\n"
        f"s = open_store(Path({str(tmp_path / 'x.db')!r}))\n"
        "print(s.scalar('SELECT COUNT(*) FROM jobs'), 'sqlite_utils' in sys.modules, 'numpy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False", "False"]


@pytest.mark.parametrize("upto", sorted(m.number for m in MIGRATIONS))
def test_each_migration_applies_onto_the_ones_before_it(tmp_path, upto):
    """From an empty database, stop after migration `upto`: every step must work on the schema before it."""
    store = open_store(tmp_path / "x.db", migrate=False)
    later = [m.key for m in MIGRATIONS if m.number > upto]
    migration_set().apply(store.db, stop_before=later)
    status = {m["number"]: m["applied_at"] for m in migration_status(store.db)}
    assert all(status[n] for n in status if n <= upto) and not any(status[n] for n in status if n > upto)
    store.close()
    rest = open_store(tmp_path / "x.db")  # and the remaining ones apply on top
    assert all(m["applied_at"] for m in migration_status(rest.db))
    rest.close()


def test_a_database_migrated_by_the_old_runner_is_adopted_without_reapplying(tmp_path):
    store = open_store(tmp_path / "x.db")
    status = migration_status(store.db)
    # What the hand-written runner left: its own `_migrations` table, no sqlite-utils records.
    store.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT)")
    for m in status:
        store.execute("INSERT INTO _migrations VALUES (?, ?, ?)", (m["number"], m["name"], "2025-01-01T00:00:00Z"))
    store.execute("DROP TABLE _sqlite_migrations")
    store.close()
    again = open_store(tmp_path / "x.db")  # re-running migration 1 would fail: its tables exist
    assert [m["applied_at"] for m in migration_status(again.db)] == ["2025-01-01T00:00:00Z"] * len(status)
    assert "_migrations" not in again.db.table_names()
    again.close()


def _post(store, state="collected"):
    stamp = iso()
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO posts (route, source, source_msg_id, state, collected_at, updated_at)"
            " VALUES ('r', '@s', 1, ?, ?, ?)",
            (state, stamp, stamp),
        )
    return cursor.lastrowid


def test_a_move_is_compare_and_set(tmp_path):
    store = open_store(tmp_path / "x.db")
    post_id = _post(store)
    assert lifecycle.move(store, post_id, "rewrite_started", only_from="collected")
    assert not lifecycle.move(store, post_id, "rewrite_started", only_from="collected")  # someone else moved it
    assert lifecycle.move(store, post_id, "rewritten", then=True, rewrite_html="<b>x</b>")
    assert store.one("SELECT state, rewrite_html FROM posts") == {"state": "rewritten", "rewrite_html": "<b>x</b>"}
    moves = [(h["from_state"], h["state"], h["event"]) for h in lifecycle.history(store, post_id)]
    # The first row is the insert's (by the trigger: this test stored the post with SQL, not through the lifecycle).
    assert moves == [(None, "collected", None), ("collected", "rewriting", "rewrite_started"),
                     ("rewriting", "rewritten", "rewritten")]  # fmt: skip


def test_concurrent_transitions_have_one_winner(tmp_path):
    path = tmp_path / "x.db"
    post_id = _post(open_store(path))
    wins = []

    def contender():
        store = open_store(path)
        wins.append(lifecycle.move(store, post_id, "rewrite_started", only_from="collected"))

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert len(lifecycle.history(open_store(path), post_id)) == 2  # the insert and the winner: losers record nothing


def test_embedded_valkey_starts_on_demand_and_persists(tmp_path, monkeypatch):
    monkeypatch.delenv("CONTENTQ_REDIS_URL", raising=False)
    settings = load_settings(home=tmp_path / "h")
    conn = connect(settings)
    try:
        conn.set("k", "v")
        assert connect(settings).get("k") == b"v"  # a second client shares the same server
        server = EmbeddedServer(settings.redis_dir)
        assert server.ping()
        assert conn.config_get("appendonly")["appendonly"] == "yes"
        server.stop()
        assert not server.ping()
        assert connect(settings).get("k") == b"v"  # restarted from the append-only file
    finally:
        EmbeddedServer(settings.redis_dir).stop()


def test_no_redis_at_all_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CONTENTQ_REDIS_URL", raising=False)
    monkeypatch.setattr(redis_runtime, "find_server_binary", lambda: None)
    with pytest.raises(RedisUnavailableError, match="no embedded server is available"):
        connect(load_settings(home=tmp_path / "h"))


def test_unreachable_redis_url_is_a_clear_error(tmp_path):
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis at redis://127.0.0.1:1"):
        connect(load_settings(home=tmp_path / "h", redis_url="redis://127.0.0.1:1"))
    assert redis  # the error is ours, not redis-py's


def test_db_migrate_then_list_shows_every_migration_applied(home):
    from typer.testing import CliRunner

    from contentq.cli.app import app

    pending = json.loads(CliRunner().invoke(app, ["db", "migrate", "--list", "--json"]).output)
    assert [r["number"] for r in pending] == sorted(m.number for m in MIGRATIONS)
    assert not any(r["applied_at"] for r in pending)  # --list only looks
    done = CliRunner().invoke(app, ["db", "migrate"])
    assert done.exit_code == 0 and f"applied {len(MIGRATIONS)} migration(s)" in done.output, done.output
    rows = json.loads(CliRunner().invoke(app, ["db", "migrate", "--list", "--json"]).output)
    assert all(r["applied_at"] for r in rows) and rows[0]["name"].startswith("initial schema")
    again = CliRunner().invoke(app, ["db", "migrate"])
    assert again.exit_code == 0 and "up to date" in again.output
