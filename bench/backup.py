"""Backups: `db backup` on a 1 GB database, and the restore drill during a real multi-worker run.

    python bench/backup.py size [--mb 1024] [--methods backup-api,vacuum-into,stepped]
    python bench/backup.py drill [--posts 500] [--workers 3] [--backup-at 0.5]

size: builds a database of realistic rows (posts with long texts, their jobs and job events) in a temporary
folder, then backs it up while a writer process commits a row every 10 ms: per method the time, the peak RSS of
the backing-up process, the writer's commits and its slowest commit during the backup, and whether the copy passes
integrity_check. `backup-api` (what `db backup` uses: SQLite's backup API in one step inside a read transaction),
`stepped` (the backup API 256 pages at a time: every commit of another connection restarts it), `vacuum-into`.

drill: N posts published by K worker processes (`contentq worker publish`) through the fake Telegram whose
channel lives in a file shared by the processes (tests/shared_telegram.py). `contentq db backup` runs while the
workers publish; after the run, `contentq db restore` of that copy (refused first while the workers still run),
then the workers again: every post must be in the channel exactly once (none re-sent, none lost) and published.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from contentq.clock import iso  # noqa: E402
from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.runtime.tracking import enqueue  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from contentq.store.db import open_store  # noqa: E402
from tests.shared_telegram import connect as telegram_db  # noqa: E402
from tests.shared_telegram import visible  # noqa: E402

ROUTES = """
[routes.drill]
target = "@drill"
sources = ["@donor"]
rewriter = "none"
[routes.drill.schedule]
asap = true
"""

# The restore drill ----------------------------------------------------------------------------------------------


@dataclass
class DrillResult:
    posts: int
    workers: int
    published_at_backup: int = 0
    backup_seconds: float = 0.0
    refused_while_running: str = ""
    restored_published: int = 0
    reconciled: int = 0
    once: int = 0
    twice: int = 0
    lost: int = 0
    not_published: int = 0
    ids_unknown: int = 0
    found_in_channel: int = 0
    """Posts sent after the backup that the publish found in the channel (no send at all)."""
    refused_resends: int = 0
    """Posts sent after the backup whose resend Telegram refused (random id known)."""
    settled_attempts: int = 0
    """Posts whose send was in flight at the backup (`attempting` in the ledger), settled from the channel."""
    run_seconds: float = 0.0
    restore_seconds: float = 0.0
    """`contentq db restore` as a command: start, checks, swap, migrations, reconcile."""
    after_restore_seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"posts: {self.posts}, workers: {self.workers}; backup taken with {self.published_at_backup} published "
            f"({self.backup_seconds:.2f} s), run {self.run_seconds:.1f} s",
            f"restore while the workers ran: refused ({self.refused_while_running[:100]}…)"
            if self.refused_while_running
            else "restore while the workers ran: NOT refused",
            f"restored copy: {self.restored_published} published; `db restore` {self.restore_seconds:.1f} s, its "
            f"reconcile acted on {self.reconciled} job(s); workers again: {self.after_restore_seconds:.1f} s",
            f"sent after the backup: {self.found_in_channel} found in the channel, {self.settled_attempts} in flight "
            f"at the backup settled from the channel, {self.refused_resends} resends refused by Telegram; "
            f"message ids unknown: {self.ids_unknown}",
            f"in the channel once: {self.once}, twice: {self.twice}, lost: {self.lost}; "
            f"not published: {self.not_published}",
        ]

    @property
    def ok(self) -> bool:
        return self.once == self.posts and not (self.twice or self.lost or self.not_published)


class Drill:
    def __init__(self, tmp: Path, workers: int, send_delay: float) -> None:
        self.tmp = tmp
        self.count = workers
        self.server = EmbeddedServer(tmp / "redis")
        self.home = tmp / "home"
        self.home.mkdir()
        (self.home / "contentq.toml").write_text(ROUTES)
        self.tg_db = tmp / "telegram.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
        self.env.update(
            PYTHONPATH=str(REPO) + os.pathsep + self.env.get("PYTHONPATH", ""),
            CONTENTQ_HOME=str(self.home),
            CONTENTQ_REDIS_URL=self.server.url,
            CONTENTQ_TG_GATEWAY="tests.shared_telegram:gateway_from_env",
            CONTENTQ_FAKE_TG_DB=str(self.tg_db),
            CONTENTQ_FAKE_TG_SEND_DELAY=str(send_delay),
            CONTENTQ_PUBLISH_MIN_INTERVAL="0",
            CONTENTQ_PUBLISH_ACCOUNT_BUDGET="0",
            CONTENTQ_PUBLISH_BACKOFF_BASE="1",
            CONTENTQ_WORKER_HEARTBEAT_TTL="5",
            CONTENTQ_WORKER_RECONCILE_INTERVAL="5",
            CONTENTQ_LOG_LEVEL="WARNING",
        )
        self.settings = load_settings(home=self.home, redis_url=self.server.url, worker_heartbeat_ttl=5)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.serial = 0

    def start_workers(self) -> None:
        for _ in range(self.count):
            self.serial += 1
            log = open(self.tmp / f"worker-{self.serial}.log", "wb")  # noqa: SIM115 - the child keeps it
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "contentq", "worker", "publish", "--name", f"drill-{self.serial}"],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )

    def stop_workers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs = []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "contentq", *args], env=self.env, capture_output=True, text=True, timeout=300
        )


def _wait_done(rt: Runtime, posts: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        published = rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'published'")
        active = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress')")
        if published == posts and not active:
            return
        time.sleep(0.2)
    raise TimeoutError(f"posts not all published within {limit:.0f} s")


def run_drill(
    posts: int = 500,
    workers: int = 3,
    *,
    backup_at: float = 0.5,
    send_delay: float = 0.05,
    forget_random_ids: bool = False,
    limit: float = 600.0,
    tmp: Path | None = None,
) -> DrillResult:
    """The drill; `forget_random_ids` makes the fake Telegram forget the random ids it saw before the restore, so
    only the channel check can keep a post from going out twice."""
    result = DrillResult(posts, workers)
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        drill = Drill(Path(folder), workers, send_delay)
        drill.server.start()
        rt = Runtime(drill.settings)
        set_process_runtime(rt)
        texts: dict[int, str] = {}
        try:
            rt.store  # noqa: B018 - migrated before the workers start
            stamp = iso()
            with rt.store.transaction() as conn:
                for i in range(posts):
                    text = f"drill post {i}: " + " ".join(random.choice(["news", "update", "today"]) for _ in range(8))
                    cursor = conn.execute(
                        "INSERT INTO posts (route, source, source_msg_id, kind, text_html, rewrite_html, collected_at,"
                        " state, scheduled_at, updated_at) VALUES ('drill', '@donor', ?, 'text', ?, ?, ?,"
                        " 'scheduled', ?, ?)",
                        (i, text, text, stamp, stamp, stamp),
                    )
                    texts[int(cursor.lastrowid or 0)] = text
            for post_id in texts:
                enqueue(rt, "publish", str(post_id), {"post_id": post_id}, post_id=post_id)
            started = time.monotonic()
            drill.start_workers()
            while rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'published'") < backup_at * posts:
                if time.monotonic() - started > limit:
                    raise TimeoutError("the workers published too little to take the backup")
                time.sleep(0.05)
            result.published_at_backup = rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'published'")
            began = time.monotonic()
            backed = drill.cli("db", "backup", "--json")
            result.backup_seconds = time.monotonic() - began
            if backed.returncode:
                raise RuntimeError(f"db backup failed: {backed.stdout}{backed.stderr}")
            backup = Path(json.loads(backed.stdout)["path"])
            refused = drill.cli("db", "restore", str(backup), "--yes")
            if refused.returncode:
                result.refused_while_running = refused.stderr.strip() or refused.stdout.strip()
            _wait_done(rt, posts, limit)
            result.run_seconds = time.monotonic() - started
            drill.stop_workers()
            rt.close()  # nothing of this process may hold the database during the restore
            if forget_random_ids:
                with closing(telegram_db(drill.tg_db)) as tg:
                    tg.execute("UPDATE messages SET random_id = -id")
            began = time.monotonic()
            restored = drill.cli("db", "restore", str(backup), "--yes", "--json")
            result.restore_seconds = time.monotonic() - began
            if restored.returncode:
                raise RuntimeError(f"db restore failed: {restored.stdout}{restored.stderr}")
            report = json.loads(restored.stdout)
            result.reconciled = len(report["reconciled"])
            if report["reconcile_error"]:
                raise RuntimeError(report["reconcile_error"])
            result.restored_published = rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'published'")
            began = time.monotonic()
            drill.start_workers()
            _wait_done(rt, posts, limit)
            result.after_restore_seconds = time.monotonic() - began
        finally:
            drill.stop_workers()
            drill.server.stop()
        _check(result, rt, drill.tg_db, texts)
        rt.close()
    return result


def _check(result: DrillResult, rt: Runtime, tg_db: Path, texts: dict[int, str]) -> None:
    by_text: dict[str, list[int]] = {}
    for message in visible(tg_db, "@drill"):
        by_text.setdefault(message["html"], []).append(message["id"])
    posts = {r["id"]: r for r in rt.store.query("SELECT id, state, message_ids FROM posts")}
    for post_id, text in texts.items():
        ids = by_text.get(text, [])
        post = posts[post_id]
        result.twice += len(ids) > 1
        result.lost += not ids
        result.not_published += post["state"] != "published"
        recorded = json.loads(post["message_ids"] or "[]")
        result.ids_unknown += post["state"] == "published" and not recorded
        result.once += len(ids) == 1 and post["state"] == "published" and recorded == ids
    events = rt.store.query("SELECT message FROM job_events WHERE event = 'settled'")
    result.found_in_channel = sum("restored from" in e["message"] for e in events)
    result.refused_resends = sum("refused the resend" in e["message"] for e in events)
    result.settled_attempts = sum("was sent before the last run stopped" in e["message"] for e in events)


# A 1 GB database ------------------------------------------------------------------------------------------------

_SENTENCE = (
    "канал новости сегодня обновление рынок курс доллар погода спорт матч победа команда город власти решение "
    "the market update today breaking report analysis price growth season team match result city council vote"
)
WORDS = _SENTENCE.split()


def build_database(path: Path, megabytes: int, seed: int = 1) -> dict[str, int]:
    """Posts with long texts (a donor text and its rewrite, a few KB each), two jobs per post and their events."""
    rng = random.Random(seed)
    open_store(path).close()  # the real schema
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(80, 160))) for _ in range(2000)]
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    stamp = iso()
    post_id = 0
    while path.stat().st_size < megabytes * 1024 * 1024:
        posts, jobs, events = [], [], []
        for _ in range(2000):
            post_id += 1
            text = "<p>" + "</p><p>".join(rng.sample(paragraphs, 4)) + "</p>"
            rewrite = "<p>" + "</p><p>".join(rng.sample(paragraphs, 4)) + "</p>"
            posts.append((post_id, "news", "@donor", post_id, "text", text, rewrite, stamp, "published", stamp))
            for kind in ("rewrite", "publish"):
                job_id = f"{kind}-{post_id}"
                jobs.append((job_id, kind, kind, str(post_id), "succeeded", json.dumps({"post_id": post_id}),
                             post_id, f"rq-{job_id}", 1, 3, stamp, stamp, stamp, stamp, 120.5, stamp))  # fmt: skip
                events += [(job_id, stamp, ev, "") for ev in ("enqueued", "started", "succeeded")]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO posts (id, route, source, source_msg_id, kind, text_html, rewrite_html, collected_at, state,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            posts,
        )
        conn.executemany(
            "INSERT INTO jobs (id, kind, queue, key, status, payload, post_id, rq_id, attempts, max_attempts,"
            " created_at, enqueued_at, started_at, finished_at, duration_ms, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            jobs,
        )
        conn.executemany("INSERT INTO job_events (job_id, at, event, message) VALUES (?, ?, ?, ?)", events)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"posts": post_id, "jobs": 2 * post_id, "job_events": 6 * post_id}


WRITER = """
import os, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("PRAGMA busy_timeout = 30000")
worst, commits = 0.0, 0
while not os.path.exists(sys.argv[2]):
    began = time.perf_counter()
    conn.execute("INSERT INTO notifications (key, at, level, message) VALUES ('bench', '', 'info', 'writer')")
    worst = max(worst, time.perf_counter() - began)
    commits += 1
    time.sleep(0.01)
print(commits, worst)
"""
"""A writer committing a row every 10 ms until its stop file appears: its commits and its slowest one."""

BACKUP = """
import json, re, sqlite3, sys, time
from pathlib import Path
from contentq.ops.backup import make_backup
from contentq.settings import load_settings
method, home, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
settings = load_settings(home=home)
began = time.perf_counter()
if method == "stepped":  # the backup API a few pages at a time, as often recommended; counts its restarts
    restarts, last = 0, None
    def progress(status, remaining, total):
        global restarts, last
        if last is not None and remaining > last:
            restarts += 1
        last = remaining
    src = sqlite3.connect(str(settings.db_path))
    dst = sqlite3.connect(str(out / "stepped.sqlite3"))
    src.backup(dst, pages=256, progress=progress, sleep=0.001)
    dst.close()
    from contentq.store.backups import check_copy
    ok = check_copy(out / "stepped.sqlite3").integrity == "ok"
    figures = {"seconds": time.perf_counter() - began, "verified": ok, "restarts": restarts}
else:
    result = make_backup(settings, out, method=method, keep_daily=99, keep_weekly=99)
    figures = {"seconds": result.seconds, "verified": result.verified, "size": result.size_bytes, **result.phases}
# VmHWM is this program's own peak (ru_maxrss would carry the forking parent's over exec)
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
figures["peak_rss_mb"] = round(int(hwm.group(1)) / 1024, 1)
print(json.dumps(figures))
"""


def _run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The JSON a child prints."""
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


@dataclass
class SizeResult:
    database_mb: float
    build_seconds: float
    rows: dict[str, int]
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_size(megabytes: int = 1024, methods: tuple[str, ...] = ("backup-api", "vacuum-into")) -> SizeResult:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        home.mkdir()
        db = home / "contentq.db"
        began = time.perf_counter()
        rows = build_database(db, megabytes)
        result = SizeResult(db.stat().st_size / 2**20, time.perf_counter() - began, rows)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        for method in methods:
            out = Path(folder) / f"out-{method}"
            out.mkdir()
            stop = Path(folder) / f"stop-{method}"
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(db), str(stop)], stdout=subprocess.PIPE, text=True
            )
            try:
                data = _run_child([sys.executable, "-c", BACKUP, method, str(home), str(out)], env)
            finally:
                stop.touch()
                written, _ = writer.communicate(timeout=60)
            commits, worst = written.split()
            data["seconds"] = round(float(data["seconds"]), 1)
            data.update(writer_commits=int(commits), writer_slowest_commit_ms=round(float(worst) * 1000, 1))
            result.methods[method] = data
            for leftover in out.iterdir():
                leftover.unlink()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    size = sub.add_parser("size", help="db backup of a large database")
    size.add_argument("--mb", type=int, default=1024)
    size.add_argument(
        "--methods", default="backup-api,vacuum-into", help="Also: stepped (on a small --mb: it restarts on commits)."
    )
    drill = sub.add_parser("drill", help="backup during a multi-worker run, restore, reconcile, workers again")
    drill.add_argument("--posts", type=int, default=500)
    drill.add_argument("--workers", type=int, default=3)
    drill.add_argument("--backup-at", type=float, default=0.5, help="Fraction of posts published at the backup.")
    drill.add_argument("--send-delay", type=float, default=0.05)
    drill.add_argument("--forget-random-ids", action="store_true", help="Telegram forgets random ids meanwhile.")
    args = parser.parse_args()
    if args.what == "size":
        sized = run_size(args.mb, tuple(args.methods.split(",")))
        print(f"database: {sized.database_mb:.0f} MB ({sized.rows}), built in {sized.build_seconds:.0f} s")
        for method, data in sized.methods.items():
            print(f"{method}: {json.dumps(data)}")
        return
    result = run_drill(
        args.posts, args.workers, backup_at=args.backup_at, send_delay=args.send_delay,
        forget_random_ids=args.forget_random_ids,
    )  # fmt: skip
    for line in result.lines():
        print(line)
    print("every post once, none re-sent, none lost:", "yes" if result.ok else "NO")
    print(json.dumps(asdict(result)))
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
