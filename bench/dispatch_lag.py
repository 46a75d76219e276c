"""Dispatch lag: how late posts go out compared with their slot.

200 posts are scheduled at times spread over 60 s (fractions of a second included), `contentq dispatch`
runs once as cron would, and a live worker (`python -m contentq worker publish`, a subprocess with RQ's
scheduler on) publishes them through the fake gateway (selected with CONTENTQ_TG_GATEWAY), which logs the
time of every send call. Prints p50, p99 and max of (send call − due time); target p99 ≤ 1.5 s.

    python bench/dispatch_lag.py [--posts 200] [--spread 60] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from contentq.clock import iso  # noqa: E402
from contentq.flow.dispatch import dispatch  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.settings import load_settings  # noqa: E402

ROUTES = """
[routes.bench]
target = "@bench"
sources = ["@donor"]
rewriter = "none"
[routes.bench.schedule]
asap = true
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--spread", type=float, default=60.0, help="Seconds the due times are spread over.")
    parser.add_argument("--lead", type=float, default=5.0, help="Seconds before the first post is due.")
    parser.add_argument("--workers", type=int, default=1, help="Worker processes on the publish queue.")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    random.seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / "redis")
        server.start()
        workers: list[subprocess.Popen[bytes]] = []
        try:
            home = Path(tmp) / "home"
            home.mkdir()
            (home / "contentq.toml").write_text(ROUTES)
            send_log = Path(tmp) / "sends.jsonl"
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
            env.update(
                PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                CONTENTQ_HOME=str(home),
                CONTENTQ_REDIS_URL=server.url,
                CONTENTQ_TG_GATEWAY="tests.fake_telegram:gateway_from_env",
                CONTENTQ_FAKE_SEND_LOG=str(send_log),
                CONTENTQ_PUBLISH_MIN_INTERVAL="0",
                CONTENTQ_PUBLISH_ACCOUNT_BUDGET="0",
                CONTENTQ_LOG_LEVEL="WARNING",
            )
            settings = load_settings(home=home, redis_url=server.url, publish_min_interval=0)
            rt = Runtime(settings)
            rt.store  # migrate before the workers start  # noqa: B018

            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "contentq", "worker", "publish"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                for _ in range(args.workers)
            ]
            time.sleep(3.0)  # imports, connection, the scheduler process

            start = datetime.now(UTC) + timedelta(seconds=args.lead)
            due: dict[str, float] = {}
            stamp = iso()
            with rt.store.transaction() as conn:
                for i in range(args.posts):
                    at = start + timedelta(seconds=random.uniform(0, args.spread))
                    html = f"bench post {i}"
                    conn.execute(
                        "INSERT INTO posts (route, source, source_msg_id, kind, text_html, rewrite_html, collected_at,"
                        " state, scheduled_at, updated_at) VALUES ('bench', '@donor', ?, 'text', ?, ?, ?,"
                        " 'scheduled', ?, ?)",
                        (i, html, html, stamp, iso(at), stamp),
                    )
                    due[html] = at.timestamp()

            result = dispatch(rt)  # cron's run: everything due within the dispatch horizon, delayed to its slot
            print(f"dispatch handed over {len(result['dispatched'])} posts ({result['delayed']} delayed)")
            last_cron = time.monotonic()
            deadline = time.monotonic() + args.lead + args.spread + 60
            while time.monotonic() < deadline:
                done = rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'published'")
                if done == args.posts:
                    break
                if time.monotonic() - last_cron >= 60:  # cron again, a minute later
                    dispatch(rt)
                    last_cron = time.monotonic()
                time.sleep(0.5)

            sends = [json.loads(line) for line in send_log.read_text().splitlines()] if send_log.exists() else []
            lags = [s["t"] - due[s["html"]] for s in sends if s["html"] in due]
            rescheduled = rt.store.scalar(
                "SELECT COUNT(*) FROM job_events WHERE event = 'rescheduled' AND message LIKE 'not due%'"
            )
            published = rt.store.scalar("SELECT COUNT(*) FROM posts WHERE state = 'published'")
            print(f"posts: {args.posts}, published: {published}, sends: {len(sends)}, workers: {args.workers}")
            if lags:
                print(
                    f"lag from due time to send call: p50 {statistics.median(lags):.3f} s, "
                    f"p99 {percentile(lags, 99):.3f} s, max {max(lags):.3f} s, min {min(lags):.3f} s"
                )
                early = sum(1 for lag in lags if lag < 0)
                print(f"sent early: {early}; jobs that arrived before their slot and waited: {rescheduled}")
                print("target p99 ≤ 1.5 s:", "met" if percentile(lags, 99) <= 1.5 else "NOT met")
            rt.close()
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    w.kill()
            server.stop()


if __name__ == "__main__":
    main()
