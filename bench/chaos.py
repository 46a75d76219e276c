"""Chaos: N posts published through K worker processes while workers, Valkey and Redis's data are destroyed.

Workers (`python -m contentq worker publish`, each a process) publish through a fake Telegram whose sent
messages and used random ids live in a SQLite file shared by all processes (tests/shared_telegram.py), so a
double send across a kill is caught. Meanwhile: workers SIGKILLed and SIGTERMed at random (and restarted,
as supervisor would), Valkey SIGKILLed and restarted once, FLUSHALL once. At the end every post must be
published exactly once: none twice, none lost, none stuck. Also prints the time from each kill of a busy
worker to its job running again (target: ≤ heartbeat TTL + 10 s).

    python bench/chaos.py [--posts 100] [--workers 3] [--kill-every 2] [--send-delay 1] [--heartbeat-ttl 30]

With `--destinations` the route publishes each post to Telegram, X and Instagram (docs/destinations.md): fake X
and Instagram servers whose state lives in SQLite files (tests/fake_x.py, tests/fake_instagram.py) take the posts
over real HTTP, each request spread over --send-delay seconds, and every post must be on each of them once.

With `--hold-db SECONDS` the run is a different trial: no kills, no Valkey chaos; once a third of the posts are
out, another process holds the database (`BEGIN EXCLUSIVE`, as a careless `sqlite3` session would) for that long.
Every post must still go out once, no job may fail or spend a try, and each worker must say so once: one WARNING
when it meets the held database, one line when it is free again (their counts per worker are printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from contentq.clock import iso, parse  # noqa: E402
from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.runtime.tracking import enqueue  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from tests.shared_telegram import visible  # noqa: E402

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""

ROUTES = """
[routes.chaos]
target = "@chaos"
sources = ["@donor"]
rewriter = "none"
[routes.chaos.schedule]
asap = true
"""

DESTINATION_ROUTES = """
[routes.chaos]
destinations = ["telegram:@chaos", "x:main", "instagram:brand"]
sources = ["@donor"]
rewriter = "none"
[routes.chaos.schedule]
asap = true
[routes.chaos.instagram]
public_media_url = "{media}"
[accounts.x.main]
api_base = "{x}"
limit = {{ burst = 100000, per_hour = 1000000 }}
[accounts.instagram.brand]
user_id = "17841400000000001"
api_base = "{ig}"
limit = {{ burst = 100000, per_hour = 1000000 }}
"""


@dataclass
class Result:
    posts: int
    kills: int = 0
    sigkills: int = 0
    sigterms: int = 0
    valkey_restarts: int = 0
    flushes: int = 0
    once: int = 0
    twice: int = 0
    lost: int = 0
    stuck: int = 0
    failed: int = 0
    elapsed: float = 0.0
    recoveries: list[float] = field(default_factory=list)
    """Seconds from the kill of a worker running a job to that job's next start."""
    unrecovered: int = 0
    held: float = 0.0
    jobs_failed: int = 0
    jobs_retried: int = 0
    """Jobs that used more than one try (attempts > 1)."""
    busy_lines: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per worker: (WARNINGs that the database is busy, lines that it is free again)."""
    destinations: dict[str, dict[str, int]] = field(default_factory=dict)
    """With --destinations: per destination, posts found there once, twice (or more), not at all."""

    def lines(self) -> list[str]:
        out = [
            f"posts: {self.posts}, workers killed: {self.kills} ({self.sigkills} SIGKILL, {self.sigterms} SIGTERM), "
            f"Valkey killed and restarted: {self.valkey_restarts}, FLUSHALL: {self.flushes}",
            f"published once: {self.once}, twice: {self.twice}, lost: {self.lost}, stuck: {self.stuck}, "
            f"failed: {self.failed} (in {self.elapsed:.0f} s)",
        ]
        if self.held:
            out.append(
                f"database held by another process for {self.held:.0f} s: jobs failed {self.jobs_failed}, "
                f"jobs that used another try {self.jobs_retried}"
            )
            for name, (warned, cleared) in sorted(self.busy_lines.items()):
                out.append(f"  {name}: {warned} busy WARNING, {cleared} 'free again' line")
        for name, counts in self.destinations.items():
            out.append(f"  {name}: once {counts['once']}, twice {counts['twice']}, lost {counts['lost']}")
        if self.recoveries:
            out.append(
                f"kill of a busy worker → its job running again: p50 {statistics.median(self.recoveries):.1f} s, "
                f"max {max(self.recoveries):.1f} s over {len(self.recoveries)} kills"
                + (f" ({self.unrecovered} jobs not restarted)" if self.unrecovered else "")
            )
        return out

    @property
    def ok(self) -> bool:
        held_ok = not self.held or (
            not (self.jobs_failed or self.jobs_retried) and all(c == (1, 1) for c in self.busy_lines.values())
        )
        destinations_ok = all(
            c["once"] == self.posts and not (c["twice"] or c["lost"]) for c in self.destinations.values()
        )
        return self.once == self.posts and not (self.twice or self.lost or self.stuck) and held_ok and destinations_ok


class Chaos:
    def __init__(
        self,
        tmp: Path,
        workers: int,
        heartbeat_ttl: int,
        reconcile_interval: int,
        seed: int,
        send_delay: float,
        destinations: bool = False,
    ) -> None:
        self.tmp = tmp
        self.count = workers
        self.rng = random.Random(seed)
        self.server = EmbeddedServer(tmp / "redis")
        self.home = tmp / "home"
        self.home.mkdir()
        (self.home / "contentq.toml").write_text(ROUTES)
        self.platforms: dict[str, Any] = {}
        if destinations:
            self.start_platforms(send_delay)
        self.tg_db = tmp / "telegram.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
        self.env.update(
            PYTHONPATH=str(REPO) + os.pathsep + self.env.get("PYTHONPATH", ""),
            CONTENTQ_HOME=str(self.home),
            CONTENTQ_REDIS_URL=self.server.url,
            CONTENTQ_TG_GATEWAY="tests.shared_telegram:gateway_from_env",
            CONTENTQ_FAKE_TG_DB=str(self.tg_db),
            CONTENTQ_FAKE_TG_SEND_DELAY=str(send_delay),  # a send takes a while: kills land mid-send too
            CONTENTQ_PUBLISH_MIN_INTERVAL="0",
            CONTENTQ_PUBLISH_ACCOUNT_BUDGET="0",
            CONTENTQ_PUBLISH_BACKOFF_BASE="1",
            CONTENTQ_WORKER_HEARTBEAT_TTL=str(heartbeat_ttl),
            CONTENTQ_WORKER_RECONCILE_INTERVAL=str(reconcile_interval),
            CONTENTQ_WORKER_MAINTENANCE_INTERVAL="5",
            CONTENTQ_LOG_LEVEL="WARNING",
        )
        self.settings = load_settings(
            home=self.home, redis_url=self.server.url, publish_min_interval=0, publish_account_budget=0,
            publish_backoff_base=1.0, worker_heartbeat_ttl=heartbeat_ttl,
        )  # fmt: skip
        if destinations:
            from tests.destination_helpers import IG_ENV, X_ENV

            self.env.update(X_ENV, **IG_ENV, CONTENTQ_INSTAGRAM_POLL_SECONDS="0.2")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.serial = 0
        self.kills: list[tuple[float, str, str]] = []  # (time, worker, job it was running)

    def start_platforms(self, latency: float) -> None:
        """Fake X and Instagram whose state lives in files (they outlive the workers), and the public media server."""
        from tests.destination_helpers import StaticServer
        from tests.fake_instagram import FakeInstagram
        from tests.fake_x import FakeX

        x = FakeX(self.tmp / "x.db", latency=latency)
        ig = FakeInstagram(self.tmp / "instagram.db", quota_total=1_000_000, latency=latency)
        media = StaticServer(self.home / "media")
        x.start()
        ig.start()
        self.platforms = {"x": x, "instagram": ig, "media": media}
        (self.home / "contentq.toml").write_text(
            DESTINATION_ROUTES.format(media=media.url, x=x.base_url, ig=ig.base_url)
        )

    def stop_platforms(self) -> None:
        for platform in self.platforms.values():
            platform.stop()

    def start_worker(self) -> None:
        self.serial += 1
        name = f"chaos-{self.serial}"
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "contentq", "worker", "publish", "--name", name],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill_worker(self, rt: Runtime, sig: signal.Signals) -> None:
        live = [n for n, p in self.procs.items() if p.poll() is None]
        if not live:
            return
        name = self.rng.choice(live)
        running = rt.store.scalar("SELECT current_job FROM workers WHERE name = ?", (name,))
        self.procs[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.procs[name].wait(10)
            if running:
                self.kills.append((time.time(), name, running))
        self.start_worker()  # supervisor would restart it (a SIGTERMed one once its job is done)

    def reap(self) -> None:
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                del self.procs[name]
        while len(self.procs) < self.count:
            self.start_worker()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_chaos(
    posts: int = 100,
    workers: int = 3,
    *,
    kill_every: float = 2.0,
    heartbeat_ttl: int = 30,
    reconcile_interval: int = 15,
    limit: float = 300.0,
    seed: int = 1,
    send_delay: float = 1.0,
    tmp: Path | None = None,
    hold_db: float = 0.0,
    destinations: bool = False,
) -> Result:
    """Run the chaos and check the channel (and, with `destinations`, X and Instagram); `limit` bounds the run."""
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        chaos = Chaos(Path(folder), workers, heartbeat_ttl, reconcile_interval, seed, send_delay, destinations)
        holder: subprocess.Popen[bytes] | None = None
        if hold_db:
            chaos.env["CONTENTQ_LOG_LEVEL"] = "INFO"  # the line that says the database is free again is INFO
        chaos.server.start()
        rt = Runtime(chaos.settings)
        set_process_runtime(rt)
        result = Result(posts)
        try:
            rt.store  # migrate before the workers start  # noqa: B018
            for _ in range(workers):
                chaos.start_worker()
            html = {}
            stamp = iso()
            with rt.store.transaction() as conn:
                for i in range(posts):
                    text = f"chaos post {i}"
                    cursor = conn.execute(
                        "INSERT INTO posts (route, source, source_msg_id, kind, text_html, rewrite_html, collected_at,"
                        " state, scheduled_at, updated_at) VALUES ('chaos', '@donor', ?, 'text', ?, ?, ?,"
                        " 'scheduled', ?, ?)",
                        (i, text, text, stamp, stamp, stamp),
                    )
                    html[int(cursor.lastrowid or 0)] = text
            for post_id in html:
                enqueue(rt, "publish", str(post_id), {"post_id": post_id}, post_id=post_id)
            started = time.monotonic()
            next_kill = started + kill_every
            valkey_at, flush_at = 0.3, 0.6  # fractions of the posts done
            while time.monotonic() - started < limit:
                settled = rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state IN ('published', 'failed')")
                active = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress')")
                if settled == posts and not active:
                    break
                done = settled / posts
                if hold_db:
                    if holder is None and done >= 1 / 3:
                        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(chaos.settings.db_path),
                                                   str(hold_db)])  # fmt: skip
                        result.held = hold_db
                elif valkey_at and done >= valkey_at:
                    valkey_at = 0
                    pid = chaos.server.pid()
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                        time.sleep(3)
                        chaos.server.start()
                        result.valkey_restarts += 1
                elif flush_at and done >= flush_at:
                    flush_at = 0
                    redis.Redis.from_url(chaos.server.url).flushall()
                    result.flushes += 1
                elif time.monotonic() >= next_kill and done < 0.95:
                    sig = signal.SIGKILL if chaos.rng.random() < 0.75 else signal.SIGTERM
                    chaos.kill_worker(rt, sig)
                    result.kills += 1
                    result.sigkills += sig == signal.SIGKILL
                    result.sigterms += sig == signal.SIGTERM
                    next_kill = time.monotonic() + chaos.rng.uniform(0.5, 1.5) * kill_every
                chaos.reap()
                time.sleep(0.2)
            result.elapsed = time.monotonic() - started
        finally:
            if holder is not None:
                holder.wait()
            chaos.stop()
            chaos.server.stop()
            platforms = dict(chaos.platforms)
            chaos.stop_platforms()
        # The checks: the channel against the posts.
        messages = visible(chaos.tg_db, "@chaos")
        counts = {text: 0 for text in html.values()}
        for message in messages:
            if message["html"] in counts:
                counts[message["html"]] += 1
        states = {r["id"]: r["state"] for r in rt.store.query("SELECT id, state FROM posts")}
        for post_id, text in html.items():
            n = counts[text]
            result.once += n == 1 and states[post_id] == "published"
            result.twice += n > 1
            result.lost += n == 0 and states[post_id] in ("published", "failed")
            result.stuck += states[post_id] not in ("published", "failed")
            result.failed += states[post_id] == "failed"
        if platforms:
            seen = {
                "x:main": [t["sent_text"] for t in platforms["x"].tweets() if t["reply_to"] is None],
                "instagram:brand": [m["caption"] for m in platforms["instagram"].media()],
            }
            for name, texts in seen.items():
                found = [texts.count(text) for text in html.values()]
                result.destinations[name] = {
                    "once": found.count(1), "twice": sum(1 for n in found if n > 1), "lost": found.count(0),
                }  # fmt: skip
        if hold_db:
            result.jobs_failed = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'failed'")
            result.jobs_retried = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE attempts > 1")
            for log_file in sorted(Path(folder).glob("chaos-*.log")):
                text = log_file.read_text(errors="replace")
                result.busy_lines[log_file.stem] = (
                    text.count("busy (held by another process); waiting"),
                    text.count("the database is free again"),
                )
        for at, _name, job_id in chaos.kills:
            restarts = rt.store.query(
                "SELECT at FROM job_events WHERE job_id = ? AND event = 'started' ORDER BY id", (job_id,)
            )
            after = [parse(r["at"]).timestamp() - at for r in restarts if parse(r["at"]).timestamp() > at]
            if after:
                result.recoveries.append(after[0])
            elif rt.store.scalar("SELECT status FROM jobs WHERE id = ?", (job_id,)) != "succeeded":
                result.unrecovered += 1  # a job that finished before the kill is not a recovery
        rt.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=2.0, help="Mean seconds between two worker kills.")
    parser.add_argument("--heartbeat-ttl", type=int, default=30, help="CONTENTQ_WORKER_HEARTBEAT_TTL of the workers.")
    parser.add_argument("--reconcile-interval", type=int, default=15, help="CONTENTQ_WORKER_RECONCILE_INTERVAL.")
    parser.add_argument("--limit", type=float, default=300.0, help="Seconds the whole run may take.")
    parser.add_argument("--send-delay", type=float, default=1.0, help="Seconds one send to the fake Telegram takes.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    parser.add_argument("--destinations", action="store_true",
                        help="Publish to Telegram, X and Instagram (file-backed fakes over HTTP).")  # fmt: skip
    parser.add_argument("--hold-db", type=float, default=0.0,
                        help="Instead of kills: hold the database from another process this many seconds.")  # fmt: skip
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    result = run_chaos(
        args.posts, args.workers, kill_every=args.kill_every, heartbeat_ttl=args.heartbeat_ttl,
        reconcile_interval=args.reconcile_interval, limit=args.limit, seed=args.seed, send_delay=args.send_delay,
        hold_db=args.hold_db, destinations=args.destinations,
    )  # fmt: skip
    for line in result.lines():
        print(line)
    target = args.heartbeat_ttl + 10
    if result.recoveries:
        print(
            f"target max ≤ heartbeat TTL + 10 s = {target} s:", "met" if max(result.recoveries) <= target else "NOT met"
        )
    print("exactly once, none lost, none stuck:", "yes" if result.ok else "NO")
    if args.json:
        data: dict[str, Any] = dict(vars(result))
        print(json.dumps(data))
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
