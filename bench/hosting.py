"""Hosting: the memory of one Telegram worker that hosts the listener and the admin bot (`worker --host
listen,bot`, the compact layout) against the three processes of the spread layout (`worker`, `listen`, `bot`),
doing the same work. The worker takes every queue in both layouts alike.

    python bench/hosting.py [--posts 200]

Telegram is tests/shared_telegram.py (a SQLite file every process shares), the bot tests/shared_bot.py; Valkey is
an embedded server of its own. Each layout: start, wait until the listener is connected and the bot beats, post
--posts donor messages live (collected by the listener, published by the worker a second apart, `contentq
dispatch` run every 10 s as cron would), wait for them all in the target channel, then read RSS and PSS of each
process (/proc/PID/smaps_rollup; PSS shares the pages several processes map between them, so its total is what
the set costs).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from contentq.ops.bot_alive import read as bot_beat  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from tests.shared_telegram import post_donor, visible  # noqa: E402

MIB = 1024


def _kib(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory(pid: int) -> tuple[float, float]:
    rollup = Path(f"/proc/{pid}/smaps_rollup")
    return _kib(rollup, "Rss") / MIB, _kib(rollup, "Pss") / MIB


def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def run(layout: str, posts: int, root: Path, url: str) -> list[tuple[str, int, float, float]]:
    home = root / layout
    home.mkdir()
    (home / "contentq.toml").write_text('[routes.news]\ntarget = "@mychan"\nsources = ["@donor"]\n'
                                        'rewriter = "none"\n[routes.news.schedule]\nasap = true\n')  # fmt: skip
    tg_db, bot_db = root / f"{layout}-telegram.db", root / f"{layout}-bot.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    env.update(PYTHONPATH=str(REPO), CONTENTQ_HOME=str(home), CONTENTQ_REDIS_URL=url,
               CONTENTQ_TG_GATEWAY="tests.shared_telegram:gateway_from_env", CONTENTQ_FAKE_TG_DB=str(tg_db),
               CONTENTQ_BOT_GATEWAY="tests.shared_bot:gateway_from_env", CONTENTQ_FAKE_BOT_DB=str(bot_db),
               CONTENTQ_BOT_TOKEN="123456:bench-token", CONTENTQ_BOT_ADMINS="111",
               CONTENTQ_PUBLISH_MIN_INTERVAL="0", CONTENTQ_PUBLISH_ACCOUNT_BUDGET="0")  # fmt: skip
    contentq = [sys.executable, "-m", "contentq"]
    if layout == "compact":
        commands = {"worker --host listen,bot": [*contentq, "worker", "--host", "listen,bot"]}
    else:
        commands = {"worker": [*contentq, "worker"],
                    "contentq-listen": [*contentq, "listen"], "contentq-bot": [*contentq, "bot"]}  # fmt: skip
    settings = load_settings(home=home, redis_url=url)
    rt = Runtime(settings)
    rt.redis.flushall()
    rt.store  # noqa: B018 - migrated before the processes start
    procs = {name: subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, cmd in commands.items()}  # fmt: skip
    try:
        wait(lambda: rt.store.scalar("SELECT state FROM listeners WHERE name = 'listen'") == "connected", 60,
             "the listener")  # fmt: skip
        wait(lambda: bot_beat(rt.redis) is not None, 60, "the bot's heartbeat")
        for i in range(1, posts + 1):
            post_donor(tg_db, "@donor", [(i, f"Post <b>{i}</b>")], live=True)
        last_dispatch = 0.0

        def published() -> bool:
            nonlocal last_dispatch
            if time.monotonic() - last_dispatch >= 10:  # cron's `contentq dispatch`: slots beyond 90 s ahead
                last_dispatch = time.monotonic()
                subprocess.run([*contentq, "dispatch"], env=env, cwd=home, capture_output=True, check=False)
            return len(visible(tg_db, "@mychan")) >= posts

        try:
            wait(published, 900, f"{posts} posts published")
        except SystemExit:
            print(rt.store.query("SELECT state, COUNT(*) AS n FROM posts GROUP BY state"),
                  rt.store.query("SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status"))  # fmt: skip
            raise
        time.sleep(2.0)
        return [(name, p.pid, *memory(p.pid)) for name, p in procs.items()]
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contentq-hosting-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(root / "valkey")
        server.start()
        try:
            for layout in ("spread", "compact"):
                rows = run(layout, args.posts, root, server.url)
                print(f"{layout}: after {args.posts} posts collected live and published (MiB)")
                for name, pid, rss, pss in rows:
                    print(f"  {name:48} pid {pid:>7}  RSS {rss:6.1f}  PSS {pss:6.1f}")
                print(f"  {'total':48} {'':11}  RSS {sum(r[2] for r in rows):6.1f}  PSS {sum(r[3] for r in rows):6.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
