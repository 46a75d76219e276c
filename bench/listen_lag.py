"""Listen lag: how long after a donor posts a message its post exists, and is published.

A live listener (contentq.intake.listen.Listener, in this process, on the scripted Telegram's live updates) takes 500
messages injected at random times over 60 s; live workers (`python -m contentq worker rewrite` and
`... worker publish`, subprocesses) rewrite them with the clean rewriter and publish them at once (asap route)
through the fake gateway (CONTENTQ_TG_GATEWAY), which logs the time of every send call. Prints p50/p99/max of
(a) arrival → post row committed, target p99 ≤ 1 s, and (b) arrival → publish call, target p99 ≤ 5 s.

The messages are spread over --routes donor → target routes (default 10): an asap route gives its posts
instants at least 1 s apart (schedule.ASAP_SPACING), so one route cannot publish 8 posts a second whatever
the listener does; `--routes 1` shows that limit.

    python bench/listen_lag.py [--messages 500] [--spread 60] [--routes 10] [--rewrite-workers 1]
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from contentq.intake.listen import Listener  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

ROUTE = """
[routes.bench{n}]
target = "@bench{n}"
sources = ["@donor{n}"]
rewriter = "clean"
[routes.bench{n}.schedule]
asap = true
"""

WORDS = str.split(
    "market rates bank energy price oil gas report city council vote budget school river bridge storm rain "
    "team match goal coach player season record museum opening artist film festival award science study "
    "space launch rocket satellite court ruling law police traffic road airport flight train strike union"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def figures(label: str, values: list[float], target: float) -> None:
    if not values:
        print(f"{label}: no data")
        return
    p99 = percentile(values, 99)
    print(f"{label}: n={len(values)} p50 {statistics.median(values):.3f} s, p99 {p99:.3f} s, max {max(values):.3f} s"
          f" — target p99 ≤ {target:g} s {'met' if p99 <= target else 'NOT met'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--spread", type=float, default=60.0)
    parser.add_argument("--routes", type=int, default=10, help="Donor → target routes the messages are spread over.")
    parser.add_argument("--rewrite-workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / "redis")
        server.start()
        workers: list[subprocess.Popen[bytes]] = []
        try:
            home = Path(tmp) / "home"
            home.mkdir()
            (home / "contentq.toml").write_text("".join(ROUTE.format(n=n) for n in range(args.routes)))
            send_log = Path(tmp) / "sends.jsonl"
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
            env.update(
                PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                CONTENTQ_HOME=str(home), CONTENTQ_REDIS_URL=server.url,
                CONTENTQ_TG_GATEWAY="tests.fake_telegram:gateway_from_env", CONTENTQ_FAKE_SEND_LOG=str(send_log),
                CONTENTQ_PUBLISH_MIN_INTERVAL="0", CONTENTQ_PUBLISH_ACCOUNT_BUDGET="0", CONTENTQ_LOG_LEVEL="WARNING",
            )  # fmt: skip
            settings = load_settings(home=home, redis_url=server.url, publish_min_interval=0)
            rt = Runtime(settings)
            rt.store  # migrate before the workers start  # noqa: B018
            queues = ["rewrite"] * args.rewrite_workers + ["publish"]
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            workers = [subprocess.Popen([sys.executable, "-m", "contentq", "worker", q], env=env, **quiet)  # type: ignore[call-overload]
                       for q in queues]  # fmt: skip

            tg = FakeTelegram()
            donors = [f"@donor{n}" for n in range(args.routes)]
            for n in range(args.routes):
                tg.add_channel(f"@donor{n}")
                tg.add_channel(f"@bench{n}")
            rt.services["telegram"] = tg
            arrived: dict[int, float] = {}
            stored: dict[int, float] = {}

            def on_stored(source: str, group: list, outcome: object, received_at: float) -> None:  # type: ignore[type-arg]
                for message in group:
                    stored[message.id] = time.time()

            listener = Listener(rt, donors, on_stored=on_stored)
            thread = threading.Thread(target=listener.run, daemon=True)
            thread.start()
            while not listener.connected:
                time.sleep(0.05)
            time.sleep(3.0)  # the workers' imports and connections

            offsets = sorted(rng.uniform(0, args.spread) for _ in range(args.messages))
            texts = {i: f"bench{i}: " + " ".join(rng.sample(WORDS, 14)) for i in range(1, args.messages + 1)}
            start = time.time()
            for msg_id, offset in enumerate(offsets, start=1):
                delay = start + offset - time.time()
                if delay > 0:
                    time.sleep(delay)
                arrived[msg_id] = time.time()
                tg.inject_message(rng.choice(donors), msg_id, texts[msg_id])
            deadline = time.time() + 60
            while time.time() < deadline:
                sent = len(send_log.read_text().splitlines()) if send_log.exists() else 0
                if sent >= args.messages:
                    break
                time.sleep(0.5)
            listener.stop()
            tg.stop_listening()
            thread.join(10)

            sends = [json.loads(line) for line in send_log.read_text().splitlines()] if send_log.exists() else []
            by_tag = {s["html"].split(":", 1)[0]: s["t"] for s in sends}
            row_lags = [stored[i] - arrived[i] for i in arrived if i in stored]
            publish_lags = [by_tag[f"bench{i}"] - arrived[i] for i in arrived if f"bench{i}" in by_tag]
            rows = rt.store.query("SELECT state, COUNT(*) AS n FROM posts GROUP BY state")
            states = {r["state"]: r["n"] for r in rows}
            print(f"messages: {args.messages} over {args.spread:g} s; posts by state: {states}; "
                  f"send calls: {len(sends)}; routes: {args.routes}; "
                  f"workers: {args.rewrite_workers} rewrite + 1 publish")  # fmt: skip
            figures("(a) arrival → post row", row_lags, 1.0)
            figures("(b) arrival → publish call", publish_lags, 5.0)
            rt.services.pop("telegram", None)
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
