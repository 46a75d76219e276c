"""Insights at scale (docs/insights.md).

1. Requests: one fetch round over --posts published posts (spread over 4 Telegram channels) on the scripted
   Telegram of the tests; counts the requests it makes (target ≤ 110 for 10,000 posts: 100 messages per
   channels.getMessages, one channels.getFullChannel per channel), then the same round interrupted by a
   FLOOD_WAIT and run again, which must ask for nothing twice.
2. The Insights page and GET /api/insights with --samples samples in the database (about 60 per post, as purge
   keeps them: hourly for two days, then daily), on uvicorn: p50/p95 latency (target p95 ≤ 150 ms).

   Then the first render after new samples (a subscriber count stored before each request, as a fetch round
   does, so the report is built again): p50/p95 of GET /insights (target p95 ≤ 150 ms too).

    python bench/insights.py [--posts 10000] [--samples 1000000] [--requests 100] [--part all|fetch|page]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from telethon import errors  # noqa: E402

from contentq.clock import iso  # noqa: E402
from contentq.errors import Reschedule  # noqa: E402
from contentq.insights.fetch import fetch_round, new_round  # noqa: E402
from contentq.ops.stats import percentile  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from contentq.web.app import create_app  # noqa: E402
from contentq.web.auth import load_token  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from tests.insights_helpers import GrowingViews  # noqa: E402

CHANNELS = ("@news_one", "@news_two", "@news_three", "@news_four")
DONORS = tuple(f"@donor_{c}" for c in "abcdefgh")
"""Two per route."""
ROUTES = """
[routes.{name}]
target = "{target}"
sources = {sources}
rewriter = "llm"
[routes.{name}.schedule]
slots = ["09:00", "13:00", "18:00"]
timezone = "Europe/Berlin"
"""


def runtime(home: Path) -> Runtime:
    home.mkdir(parents=True, exist_ok=True)
    text = "".join(
        ROUTES.format(name=f"r{i}", target=ref, sources=json.dumps(DONORS[2 * i : 2 * i + 2]))
        for i, ref in enumerate(CHANNELS)
    )
    (home / "contentq.toml").write_text(text, encoding="utf-8")
    return Runtime(load_settings(home=home))


def donor_of(channel: str, rng: random.Random) -> str:
    return DONORS[2 * CHANNELS.index(channel) + rng.randint(0, 1)]


def published(rt: Runtime, posts: int, *, days: float, stamp: datetime) -> list[tuple[int, str, int, datetime]]:
    """`posts` posts published to the four channels over the last `days` days: (post id, channel, msg id, at)."""
    rng = random.Random(7)
    rows, out = [], []
    for n in range(1, posts + 1):
        channel = CHANNELS[n % len(CHANNELS)]
        at = stamp - timedelta(seconds=days * 86400 * n / posts)
        mid = 100_000 + n
        route = f"r{CHANNELS.index(channel)}"
        rows.append(
            (n, route, donor_of(channel, rng), n, "text", "post", iso(at), "published", channel, iso(at),
             json.dumps([mid]), f"https://t.me/{channel[1:]}/{mid}", "llm", iso(at))
        )  # fmt: skip
        out.append((n, channel, mid, at))
    with rt.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO posts (id, route, source, source_msg_id, kind, text_html, collected_at, state, target,"
            " published_at, message_ids, link, rewriter, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO usage (at, post_id, route, model, tokens_in, tokens_out, cost) VALUES (?, ?, ?, 'm', 900,"
            " 300, ?)",
            [(r[6], r[0], r[1], 0.0004 + 0.0001 * (r[0] % 5)) for r in rows],
        )
    return out


def telegram(rt: Runtime, posts: list[tuple[int, str, int, datetime]]) -> FakeTelegram:
    views = GrowingViews()
    tg = FakeTelegram(stats=views)
    for i, ref in enumerate(CHANNELS):
        tg.add_channel(ref, 2_000_000 + i, title=ref)
        tg.subscribers[ref] = 10_000 * (i + 1)
    for _, channel, mid, at in posts:
        views.add(channel, mid, at, 800 + (mid % 997))
    rt.services["telegram"] = tg
    return tg


def requests_bench(posts: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        rt = runtime(Path(tmp) / "home")
        stamp = datetime.now(UTC)
        tg = telegram(rt, published(rt, posts, days=13.5, stamp=stamp))
        started = time.perf_counter()
        report = fetch_round(rt, new_round())
        seconds = time.perf_counter() - started
        calls = [c for c in tg.calls if c[0] in ("message_stats", "subscriber_count")]
        # The same number of posts again, a FLOOD_WAIT in the middle of the round, then the round run again.
        tg.calls.clear()
        round_ = new_round()
        tg.fail_next("message_stats", *([None] * 40), errors.FloodWaitError(request=None, capture=300))
        with contextlib.suppress(Reschedule):
            fetch_round(rt, round_)
        fetch_round(rt, round_)
        interrupted = [c for c in tg.calls if c[0] in ("message_stats", "subscriber_count")]
        doubled = rt.store.scalar(
            "SELECT COUNT(*) FROM (SELECT item_id FROM insight_samples WHERE round = ? GROUP BY item_id"
            " HAVING COUNT(*) > 1)",
            (round_,),
        )
        sampled = rt.store.scalar("SELECT COUNT(*) FROM insight_samples WHERE round = ?", (round_,))
        rt.close()
    return {
        "posts": posts, "requests": len(calls), "samples": report.sampled, "round_s": round(seconds, 2),
        "requests_with_flood_wait": len(interrupted), "samples_after_flood_wait": sampled, "doubled": doubled,
    }  # fmt: skip


def fill_samples(rt: Runtime, samples: int, stamp: datetime) -> int:
    """Posts of the last 30 days with ~60 samples each (hourly for 2 days, daily after) and their rollups."""
    per_post = 48 + 12
    posts = max(1, samples // per_post)
    rng = random.Random(11)
    items, rows = [], []
    made = published(rt, posts, days=29, stamp=stamp)
    for n, channel, mid, at in made:
        peak = 800 + (mid % 997) * (1.6 if n % 5 == 1 else 1.0)
        ages = [h * 3600 for h in range(48)] + [d * 86400 for d in range(2, 14)]
        for age in ages[:per_post]:
            views = int(peak * (1 - 2.718 ** (-age / 21600)))
            rows.append((n, f"r{age}", iso(at + timedelta(seconds=age)), age, views, views // 50, views // 100,
                         views // 20))  # fmt: skip
        v24: float | None = peak * (1 - 2.718**-4) if stamp - at >= timedelta(hours=24) else None
        items.append(
            (n, n, f"telegram:{channel}", "telegram", channel, str(mid), f"r{CHANNELS.index(channel)}",
             donor_of(channel, rng), "llm", iso(at), f"https://t.me/{channel[1:]}/{mid}", 0.0005, len(ages),
             v24, v24 and v24 / 50, v24 and v24 / 100, v24 and v24 / 20)
        )  # fmt: skip
    with rt.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO insight_items (id, post_id, destination, platform, account, platform_id, route, source,"
            " rewriter, published_at, link, llm_cost, samples, views_24h, forwards_24h, replies_24h, reactions_24h)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            items,
        )
        conn.executemany(
            "INSERT INTO insight_samples (item_id, round, at, age_s, views, forwards, replies, reactions)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        for i, ref in enumerate(CHANNELS):
            conn.executemany(
                "INSERT INTO channel_samples (destination, round, at, subscribers) VALUES (?, ?, ?, ?)",
                [(f"telegram:{ref}", f"r{h}", iso(stamp - timedelta(hours=h)), 10_000 * (i + 1) - h)
                 for h in range(0, 30 * 24, 6)],
            )  # fmt: skip
    return len(rows)


def fetch_round_writes(rt: Runtime, n: int, stamp: datetime, per_round: int = 24) -> None:
    """What one hourly round writes at this rate of posts: the oldest items without figures at 24 h get them,
    new items appear (the posts fanned out to X, published now) and a subscriber count is stored."""
    with rt.store.transaction() as conn:
        conn.execute(
            "UPDATE insight_items SET views_24h = 900.0 + id % 97, forwards_24h = 18.0, reactions_24h = 45.0"
            " WHERE id IN (SELECT id FROM insight_items WHERE views_24h IS NULL ORDER BY published_at LIMIT ?)",
            (per_round,),
        )
        conn.execute(
            "INSERT INTO insight_items (post_id, destination, platform, account, platform_id, route, source, rewriter,"
            " published_at, link, llm_cost) SELECT id, 'x:main', 'x', 'main', CAST(id AS TEXT), route, source,"
            " rewriter, ?, link, 0.0005 FROM posts WHERE id > ? ORDER BY id LIMIT ?",
            (iso(stamp), n * per_round, per_round),
        )
        conn.execute(
            "INSERT INTO channel_samples (destination, round, at, subscribers) VALUES (?, ?, ?, ?)",
            (f"telegram:{CHANNELS[0]}", f"cold{n}", iso(stamp), 1),
        )


def timed(client: httpx.Client, path: str, count: int, **kw: object) -> dict[str, float | None]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path, **kw)  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code} {response.text[:300]}")
    return {"p50_ms": round(percentile(times, 50) or 0, 1), "p95_ms": round(percentile(times, 95) or 0, 1)}


def page_bench(samples: int, requests: int, cold_requests: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        rt = runtime(Path(tmp) / "home")
        stamp = datetime.now(UTC)
        stored = fill_samples(rt, samples, stamp)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(create_app(rt.settings, rt), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        token = load_token(rt.settings)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                              timeout=60) as client:  # fmt: skip
                timed(client, "/api/insights", 3)  # warm up
                page = timed(client, "/insights", requests, headers={"Accept": "text/html"})
                api = timed(client, "/api/insights", requests)
                # Cold: before each request what an hourly fetch round stores (a subscriber count, the figures at
                # 24 h of the posts that reached that age, new items), so each one builds the report again.
                cold_times = []
                for n in range(cold_requests):
                    fetch_round_writes(rt, n, stamp)
                    cold_times.append(timed(client, "/insights", 1, headers={"Accept": "text/html"})["p50_ms"])
                cold = {"p50_ms": percentile(cold_times, 50), "p95_ms": percentile(cold_times, 95)}
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            items = rt.store.scalar("SELECT COUNT(*) FROM insight_items")
            rt.close()
    return {"samples": stored, "posts": items, "page": page, "api": api, "cold": cold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--cold", type=int, default=40, help="first renders measured (each after new samples)")
    parser.add_argument("--part", choices=("all", "fetch", "page"), default="all",
                        help="fetch: a round's requests only; page: the page and its first render only")  # fmt: skip
    args = parser.parse_args()
    if args.part in ("all", "fetch"):
        fetch_part(args.posts)
    if args.part in ("all", "page"):
        page_part(args.samples, args.requests, args.cold)


def fetch_part(posts: int) -> None:
    fetch = requests_bench(posts)
    print(
        f"fetch: {fetch['posts']:,} posts on {len(CHANNELS)} channels → {fetch['requests']} requests "
        f"(target ≤ 110), {fetch['samples']:,} samples in {fetch['round_s']} s"
    )
    print(
        f"fetch with a FLOOD_WAIT after 40 requests, then the same round again: "
        f"{fetch['requests_with_flood_wait']} requests, {fetch['samples_after_flood_wait']:,} samples, "
        f"{fetch['doubled']} doubled"
    )


def page_part(samples: int, requests: int, cold: int) -> None:
    page = page_bench(samples, requests, cold)
    print(
        f"Insights page with {page['samples']:,} samples ({page['posts']:,} posts): GET /insights "
        f"p50 {page['page']['p50_ms']} ms, p95 {page['page']['p95_ms']} ms (target p95 ≤ 150 ms); "  # type: ignore[index]
        f"GET /api/insights p50 {page['api']['p50_ms']} ms, p95 {page['api']['p95_ms']} ms"  # type: ignore[index]
    )
    print(
        f"  right after a fetch round's writes (the report built again, {cold} renders): GET /insights "
        f"p50 {page['cold']['p50_ms']} ms, "  # type: ignore[index]
        f"p95 {page['cold']['p95_ms']} ms"  # type: ignore[index]
    )


if __name__ == "__main__":
    main()
