"""Rewrite throughput: W real `contentq worker rewrite` processes against an LLM that answers after L seconds.

    python bench/rewrite.py [--posts 200] [--latency 0.5] [--workers 1,2,4]

llmock (on loopback, in this process) answers every chat completion after a fixed latency L with a valid
rewrite. For each W, `posts` collected posts get their rewrite job, then W workers run in burst mode until
the queue is empty. Prints posts/s against the ideal W/L (every worker always waiting on one LLM call),
from the first job's start to the last job's end (the job records) and from the workers' start to their
exit, and each worker's peak RSS (from the kernel's accounting of the exited process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmock.chaos import ChaosSettings  # noqa: E402
from llmock.pytest_plugin import LLMock  # noqa: E402
from llmock.testing import LLMockServer  # noqa: E402

from contentq.clock import iso  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.runtime.tracking import enqueue  # noqa: E402
from contentq.settings import load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROUTES = """
[routes.news]
target = "@my_channel"
sources = ["@donor"]
rewriter = "llm"
prompt = "Rewrite for a tech audience, friendly tone."
images = "none"
"""
ANSWER = json.dumps(
    {"text": "<b>Frobnicator 3</b> ships today: faster, smaller, cheaper.", "title": "Frobnicator 3",
     "image_prompt": None, "skip": False, "skip_reason": None}
)  # fmt: skip
DONOR = "Frobnicator 3 is out today. It is faster, smaller and cheaper than the Frobnicator 2, the maker says."


def add_posts(rt: Runtime, n: int, batch: int) -> list[int]:
    ids = []
    with rt.store.transaction() as conn:
        for i in range(n):
            stamp = iso()
            cursor = conn.execute(
                "INSERT INTO posts (route, source, source_msg_id, kind, text_html, collected_at, posted_at, state,"
                " updated_at) VALUES ('news', '@donor', ?, 'text', ?, ?, ?, 'collected', ?)",
                (batch * 100_000 + i + 1, f"{DONOR} ({batch}/{i})", stamp, stamp, stamp),
            )
            ids.append(int(cursor.lastrowid or 0))
    return ids


def run(rt: Runtime, env: dict[str, str], workers: int, posts: int, batch: int) -> dict[str, float | list[float]]:
    ids = add_posts(rt, posts, batch)
    for post_id in ids:
        enqueue(rt, "rewrite", str(post_id), {"post_id": post_id}, post_id=post_id)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "contentq", "worker", "rewrite", "--burst"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(workers)
    ]
    rss = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss.append(usage.ru_maxrss / 1024)  # KiB on Linux
    wall = time.perf_counter() - started
    marks = ",".join("?" for _ in ids)
    row = rt.store.one(
        f"SELECT COUNT(*) AS n, MIN(started_at) AS first, MAX(finished_at) AS last FROM jobs"
        f" WHERE kind = 'rewrite' AND status = 'succeeded' AND post_id IN ({marks})",
        ids,
    )
    assert row is not None
    if row["n"] != posts:
        raise SystemExit(f"error: only {row['n']} of {posts} rewrite jobs succeeded; see the jobs table")
    busy = (datetime.fromisoformat(row["last"]) - datetime.fromisoformat(row["first"])).total_seconds()
    return {"jobs_rate": posts / busy, "wall_rate": posts / wall, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the LLM takes to answer")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to try, comma-separated")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    chaos = ChaosSettings(latency_ms=int(args.latency * 1000))
    with tempfile.TemporaryDirectory() as tmp, LLMockServer(chaos=chaos) as llm:
        LLMock(llm).reply(ANSWER, times=None)
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "contentq.toml").write_text(ROUTES)
        server = EmbeddedServer(Path(tmp) / "redis")
        server.start()
        try:
            env = {**os.environ, "CONTENTQ_HOME": str(home), "CONTENTQ_REDIS_URL": server.url,
                   "CONTENTQ_OPENAI_BASE_URL": llm.base_url("openai"), "CONTENTQ_OPENAI_API_KEY": "sk-bench",
                   "PYTHONPATH": str(ROOT)}  # fmt: skip
            settings = load_settings(home=home, redis_url=server.url, openai_base_url=llm.base_url("openai"),
                                     openai_api_key="sk-bench")  # fmt: skip
            rt = Runtime(settings)
            print(f"{args.posts} posts per run, LLM latency {args.latency:g} s, workers: {counts}")
            print(f"{'W':>2} {'ideal W/L':>10} {'posts/s (jobs)':>15} {'of ideal':>9} {'posts/s (wall)':>15}"
                  "  peak RSS per worker (MiB)")  # fmt: skip
            for batch, workers in enumerate(counts):
                result = run(rt, env, workers, args.posts, batch)
                ideal = workers / args.latency
                jobs_rate = float(result["jobs_rate"])  # type: ignore[arg-type]
                rss = ", ".join(f"{r:.0f}" for r in result["rss"])  # type: ignore[union-attr]
                print(f"{workers:>2} {ideal:>10.1f} {jobs_rate:>15.2f} {jobs_rate / ideal:>9.0%}"
                      f" {float(result['wall_rate']):>15.2f}  {rss}", flush=True)  # type: ignore[arg-type]  # fmt: skip
            rt.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
