"""The web panel under a big store: 100,000 jobs (200,000 events) and 20,000 posts.

Measures, against `contentq web`'s app on uvicorn (a real HTTP server, one process, as supervisor runs it):
- p50/p95 latency of the jobs page (`GET /jobs`, HTML) and of `GET /api/jobs?status=failed` (target p95 ≤ 150 ms);
- the delay from a job's state change (the jobs row and its event written as a worker writes them) to the SSE
  event reaching a client of `GET /api/events` (target p95 ≤ 1 s);
- the same for a post's state change (a lifecycle move: it writes the post and its history row, the feed's),
  and what a move costs: moves per second (each with its history row);
- issue 25: text search (`GET /api/posts?search=`, SQLite FTS5) over --search-posts posts of 40-80 words
  (target p95 ≤ 100 ms), and a bulk retry of --bulk failed jobs from the panel in one request (the confirmation
  form's POST /jobs/bulk; target ≤ 5 s), on a real (embedded) Redis, as a retry pushes each job to RQ.

    python bench/web.py [--jobs 100000] [--posts 20000] [--requests 200] [--changes 100]
                        [--search-posts 100000] [--bulk 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from contentq import lifecycle  # noqa: E402
from contentq.clock import iso  # noqa: E402
from contentq.ops.stats import percentile  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from contentq.store.jobs import add_event  # noqa: E402
from contentq.web.app import create_app  # noqa: E402
from contentq.web.auth import load_token  # noqa: E402

STATUSES = ["succeeded"] * 80 + ["failed"] * 12 + ["cancelled"] * 3 + ["queued"] * 5
QUEUES = {"collect": "collect", "rewrite": "rewrite", "publish": "publish", "imagegen": "imagegen"}


def fill(rt: Runtime, jobs: int, posts: int) -> None:
    rng = random.Random(13)
    base = time.time() - 30 * 86400
    post_rows = []
    for n in range(1, posts + 1):
        stamp = iso_at(base + n * 30 * 86400 / posts)
        state = rng.choice(["published"] * 8 + ["awaiting_approval", "scheduled", "duplicate", "failed"])
        post_rows.append((n, "news", "@donor", n, "text", f"post {n} <b>text</b>", stamp, state, stamp))
    job_rows, event_rows = [], []
    for n in range(jobs):
        kind = rng.choice(list(QUEUES))
        status = rng.choice(STATUSES)
        created = iso_at(base + n * 30 * 86400 / jobs)
        job_id = f"{kind}-{n}"
        finished = created if status in ("succeeded", "failed") else None
        error = "boom" if status == "failed" else None
        job_rows.append(
            (job_id, kind, QUEUES[kind], str(n), status, rng.randint(1, posts), created, created, finished, error)
        )
        event_rows.append((job_id, created, "enqueued", f"queue {QUEUES[kind]}"))
        event_rows.append((job_id, created, status, ""))
    with rt.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO posts (id, route, source, source_msg_id, kind, text_html, collected_at, state, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            post_rows,
        )
        conn.executemany(
            "INSERT INTO jobs (id, kind, queue, key, status, post_id, created_at, updated_at, finished_at, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            job_rows,
        )
        conn.executemany("INSERT INTO job_events (job_id, at, event, message) VALUES (?, ?, ?, ?)", event_rows)
    rt.store.execute("ANALYZE")


def iso_at(seconds: float) -> str:
    from datetime import UTC, datetime

    return iso(datetime.fromtimestamp(seconds, UTC))


def timed(client: httpx.Client, url: str, n: int, **kw: object) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(url, **kw)  # type: ignore[arg-type]
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text[:200]
    return out


def sse_delays(rt: Runtime, base: str, token: str, changes: int) -> list[float]:
    """Change `changes` queued jobs to in_progress as a worker does; the time until each event arrives."""
    targets = [r["id"] for r in rt.store.query("SELECT id FROM jobs WHERE status = 'queued' LIMIT ?", (changes,))]
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{base}/api/events", headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as response:  # fmt: skip
            ready.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if data.get("event") == "started" and data["job_id"] in sent:
                        got[data["job_id"]] = time.perf_counter()
                        if len(got) == len(targets):
                            return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.5)
    for job_id in targets:
        with rt.store.transaction() as conn:
            conn.execute("UPDATE jobs SET status = 'in_progress', started_at = ? WHERE id = ?", (iso(), job_id))
            add_event(conn, job_id, "started", "attempt 1")
        sent[job_id] = time.perf_counter()
        time.sleep(random.uniform(0.05, 0.3))
    thread.join(timeout=15)
    return [(got[j] - sent[j]) * 1000 for j in targets if j in got]


def sse_post_delays(rt: Runtime, base: str, token: str, changes: int) -> list[float]:
    """Move `changes` posts awaiting approval to 'scheduled' as `posts approve` does; the time until each arrives."""
    targets = [
        int(r["id"])
        for r in rt.store.query("SELECT id FROM posts WHERE state = 'awaiting_approval' LIMIT ?", (changes,))
    ]
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{base}/api/events", headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as response:  # fmt: skip
            ready.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if data.get("state") == "scheduled" and data.get("id") in sent:
                        got[data["id"]] = time.perf_counter()
                        if len(got) == len(targets):
                            return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.5)
    for post_id in targets:
        lifecycle.move(rt.store, post_id, "approved", then=True)  # the bench measures the feed, not the dispatch
        sent[post_id] = time.perf_counter()
        time.sleep(random.uniform(0.05, 0.3))
    thread.join(timeout=15)
    return [(got[p] - sent[p]) * 1000 for p in targets if p in got]


def moves_per_second(rt: Runtime, n: int = 2000) -> float:
    """Moves of one post back and forth (publishing ⇄ scheduled): each one also writes its history row."""
    post_id = int(rt.store.scalar("SELECT id FROM posts WHERE state = 'published' LIMIT 1") or 0)
    rt.store.execute("UPDATE posts SET state = 'scheduled' WHERE id = ?", (post_id,))  # a bench's own set-up
    started = time.perf_counter()
    for i in range(n):
        lifecycle.move(rt.store, post_id, "publish_started" if i % 2 == 0 else "publish_postponed")
    return n / (time.perf_counter() - started)


WORDS = (  # noqa: SIM905 - a sentence of words reads better than a list of 80 strings
    "launch rocket weather friday market report revenue city council river bridge festival music school teacher"
    " train station airport energy price bank rate football match season player coach election vote minister"
    " запуск ракеты погода пятница рынок отчёт выручка город совет река мост фестиваль музыка школа учитель поезд"
    " вокзал аэропорт энергия цена банк ставка футбол матч сезон игрок тренер выборы голос министр"
).split()
SEARCHES = ["ракеты", "festival music", "weath", "bank rate", "министр выборы", "zeppelin"]
"""Common words, two words, a prefix, Cyrillic, and a word no post has."""


def fill_search(rt: Runtime, posts: int, first_id: int) -> None:
    """`posts` posts of 40-80 words (a Zipf-like mix: a few words in most posts, most words in few), original
    and rewrite; the FTS5 triggers index them as they are inserted, as ingest and rewrite would."""
    rng = random.Random(25)
    weights = [1 / (n + 1) for n in range(len(WORDS))]
    stamp = iso()
    rows = []
    for n in range(first_id, first_id + posts):
        original = " ".join(rng.choices(WORDS, weights, k=rng.randint(40, 80)))
        rewrite = " ".join(rng.choices(WORDS, weights, k=rng.randint(40, 80)))
        rows.append(
            (n, "news", "@search", n, "text", f"<b>{original[:40]}</b> {original}", rewrite, stamp, "published", stamp)
        )
    with rt.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO posts (id, route, source, source_msg_id, kind, text_html, rewrite_html, collected_at, state,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def fill_failed(rt: Runtime, jobs: int) -> None:
    """`jobs` failed noop jobs of the maintenance queue (the bulk retry's filter picks exactly these)."""
    stamp = iso()
    with rt.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO jobs (id, rq_id, kind, queue, key, status, generation, attempts, max_attempts, created_at,"
            " updated_at, finished_at, error) VALUES (?, ?, 'noop', 'maintenance', ?, 'failed', 1, 1, 1, ?, ?, ?,"
            " 'boom')",
            [(f"noop-bulk{n}", f"noop-bulk{n}-g1", f"bulk{n}", stamp, stamp, stamp) for n in range(jobs)],
        )


def bulk_retry(client: httpx.Client, rt: Runtime) -> tuple[float, str]:
    """The panel's confirmation form, submitted once: every failed job of the maintenance queue retried."""
    started = time.perf_counter()
    response = client.post(
        "/jobs/bulk", data={"action": "retry", "status": "failed", "queue": "maintenance", "kind": "noop"},
        headers={"Accept": "text/html"},
    )  # fmt: skip
    took = time.perf_counter() - started
    assert response.status_code == 303, response.text[:300]
    left = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE queue = 'maintenance' AND status = 'failed'")
    queued = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE queue = 'maintenance' AND status = 'queued'")
    return took, f"{queued} queued again, {left} still failed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--search-posts", type=int, default=100_000)
    parser.add_argument("--bulk", type=int, default=1000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="contentq-bench-web-"))
    redis_server = EmbeddedServer(home / "redis")  # a bulk retry pushes every job to RQ
    redis_server.start()
    settings = load_settings(home=home, redis_url=redis_server.url)
    rt = Runtime(settings)
    started = time.perf_counter()
    fill(rt, args.jobs, args.posts)
    print(f"filled {args.jobs} jobs, {args.posts} posts in {time.perf_counter() - started:.1f} s ({home})")
    started = time.perf_counter()
    fill_search(rt, args.search_posts, args.posts + 1)
    fill_failed(rt, args.bulk)
    rt.store.execute("ANALYZE")
    total = rt.store.scalar("SELECT COUNT(*) FROM posts")
    print(f"filled {args.search_posts} posts of 40-80 words (FTS5-indexed; {total} posts in all) and {args.bulk}"
          f" failed jobs in {time.perf_counter() - started:.1f} s")  # fmt: skip

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, rt), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    token = load_token(settings)
    results = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        timed(client, "/api/jobs", 5)  # warm up
        results["jobs page (GET /jobs)"] = timed(client, "/jobs", args.requests, headers={"Accept": "text/html"})
        results["GET /api/jobs?status=failed"] = timed(client, "/api/jobs", args.requests, params={"status": "failed"})
        cursor = client.get("/api/jobs", params={"status": "failed", "limit": 50}).json()["next_cursor"]
        results["GET /api/jobs?status=failed, page 2"] = timed(
            client, "/api/jobs", args.requests, params={"status": "failed", "cursor": cursor}
        )
        results["posts page (GET /posts)"] = timed(
            client, "/posts", args.requests // 2, headers={"Accept": "text/html"}
        )
        for words in SEARCHES:
            found = client.get("/api/posts", params={"search": words}).json()["total"]
            results[f"search {words!r} ({found} match)"] = timed(
                client, "/api/posts", args.requests // 2, params={"search": words}
            )
        searched = [v for k, v in results.items() if k.startswith("search ")]
        results["search, all of the above"] = [x for values in searched for x in values]
        results["search 'festival music', state=failed (0 match)"] = timed(
            client, "/api/posts", args.requests // 2, params={"search": "festival music", "state": "failed"}
        )
        results["posts page with a search (HTML)"] = timed(
            client, "/posts", args.requests // 2, params={"search": "festival music"}, headers={"Accept": "text/html"}
        )
        took, outcome = bulk_retry(client, rt)
    results["job state change → SSE event"] = sse_delays(rt, base, token, args.changes)
    results["post state change → SSE event"] = sse_post_delays(rt, base, token, args.changes)
    server.should_exit = True
    for name, values in results.items():
        p50, p95 = percentile(values, 50), percentile(values, 95)
        print(f"{name:40s} n={len(values):4d}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {max(values):7.1f} ms")
    print(f"post moves (each with its history row): {moves_per_second(rt):.0f}/s")
    print(f"bulk retry of {args.bulk} failed jobs from the panel (one POST /jobs/bulk): {took:.2f} s ({outcome})")
    rt.close()
    redis_server.stop()


if __name__ == "__main__":
    main()
