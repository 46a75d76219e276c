"""Admin bot: from a press of Approve to the post scheduled and its card showing the outcome.

100 posts await approval (a route with `approval = true`); the bot's serve loop (`contentq bot`'s own, in a
thread) sends their cards through the scripted bot gateway (tests/fake_bot.py, no network), then every card's
Approve is pressed: one after the other (each press waits for the previous card's update), then all at once (a
burst: a press waits for the ones before it). The fake records when each card's message was edited; a press
counts once its post is `scheduled` and every admin's card shows the outcome (the second admin's too). Prints
p50, p95 and max of press → cards updated for both runs, and when the cards were in the chats; target p95 ≤ 1 s
with 100 cards.

    python bench/bot.py [--cards 100] [--admins 2] [--tick 1.0]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from contentq import notify  # noqa: E402
from contentq.bot.serve import serve  # noqa: E402
from contentq.clock import iso  # noqa: E402
from contentq.flow import pipeline  # noqa: E402
from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from tests.fake_bot import FakeBot  # noqa: E402

ROUTES = """
[routes.bench]
target = "@bench"
sources = ["@donor"]
rewriter = "none"
approval = true
[routes.bench.schedule]
slots = ["09:00", "12:00", "15:00", "18:00", "21:00"]
"""


class TimedBot(FakeBot):
    """The scripted gateway, noting when each message was last edited."""

    def __init__(self) -> None:
        super().__init__()
        self.edited_at: dict[tuple[int, int], float] = {}

    def edit_text(self, chat_id: int, message_id: int, html: str, *, buttons=None) -> None:  # type: ignore[no-untyped-def]
        super().edit_text(chat_id, message_id, html, buttons=buttons)
        self.edited_at[(chat_id, message_id)] = time.perf_counter()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def add_awaiting(rt: Runtime, n: int, first: int) -> list[int]:
    ids = []
    for i in range(n):
        stamp = iso()
        with rt.store.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO posts (route, source, source_msg_id, kind, text_html, rewrite_html, collected_at, state,"
                " updated_at) VALUES ('bench', '@donor', ?, 'text', ?, ?, ?, 'rewritten', ?)",
                (first + i, f"Donor post {i}", f"Post <b>{i}</b>: " + "news " * 40, stamp, stamp),
            )
        post_id = int(cursor.lastrowid or 0)
        pipeline.on_rewritten(rt, post_id)
        ids.append(post_id)
    return ids


def cards(tg: TimedBot, chat: int) -> dict[int, int]:
    """post id → its card's control message in `chat`."""
    out = {}
    for message in tg.visible(chat):
        if message.buttons and "awaiting approval" in message.html:
            out[int(message.html.split("Post ", 1)[1].split("<", 1)[0])] = message.id
    return out


def press_and_time(rt: Runtime, tg: TimedBot, admins: list[int], post_ids: list[int], *, burst: bool) -> list[float]:
    controls = {chat: cards(tg, chat) for chat in admins}
    pressed: dict[int, float] = {}
    latencies: list[float] = []

    def done(post_id: int) -> float | None:
        edits = [tg.edited_at.get((chat, controls[chat][post_id])) for chat in admins]
        if None in edits or any(e < pressed[post_id] for e in edits if e is not None):
            return None
        state = rt.store.scalar("SELECT state FROM posts WHERE id = ?", (post_id,))
        return max(e for e in edits if e is not None) if state == "scheduled" else None

    def wait(post_id: int) -> None:
        deadline = time.monotonic() + 30
        while (finished := done(post_id)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"post {post_id}: no card update within 30 s")
            time.sleep(0.0005)
        latencies.append(finished - pressed[post_id])

    for post_id in post_ids:
        pressed[post_id] = time.perf_counter()
        tg.press(admins[0], admins[0], controls[admins[0]][post_id], "Approve")
        if not burst:
            wait(post_id)
    if burst:
        for post_id in post_ids:
            wait(post_id)
    return latencies


def report(name: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(f"{name:<28} n={len(ms):<4} p50 {percentile(ms, 50):7.1f} ms   p95 {percentile(ms, 95):7.1f} ms   "
          f"max {max(ms):7.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=100)
    parser.add_argument("--admins", type=int, default=2, help="Admins: each gets every card in a private chat.")
    parser.add_argument("--tick", type=float, default=1.0, help="The bot's periodic work interval (its default).")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    notify.install()
    admins = [1000 + i for i in range(args.admins)]
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / "redis")
        server.start()
        try:
            home = Path(tmp) / "home"
            home.mkdir()
            (home / "contentq.toml").write_text(ROUTES)
            settings = load_settings(home=home, redis_url=server.url, bot_token="1:bench-token-value",
                                     bot_admins=",".join(map(str, admins)))  # fmt: skip
            rt = Runtime(settings)
            set_process_runtime(rt)
            for rounds, burst in ((1, False), (2, True)):
                ids = add_awaiting(rt, args.cards, rounds * 100_000)
                tg = TimedBot()
                stop = threading.Event()
                thread = threading.Thread(target=serve, args=(rt, tg, stop), kwargs={"tick": args.tick}, daemon=True)
                started = time.perf_counter()
                thread.start()
                while any(len(cards(tg, chat)) < args.cards for chat in admins):
                    time.sleep(0.005)
                sent = time.perf_counter() - started
                print(f"round {rounds}: {args.cards} cards in {args.admins} admin chat(s) {sent:.2f} s after the bot "
                      f"started (its first periodic round comes {args.tick:g} s after its start)")  # fmt: skip
                latencies = press_and_time(rt, tg, admins, ids, burst=burst)
                report("press → card (one by one)" if not burst else "press → card (100 at once)", latencies)
                stop.set()
                thread.join(10)
                tg.close()
            rt.close()
        finally:
            server.stop()
    print("target: p95 ≤ 1000 ms with 100 cards")


if __name__ == "__main__":
    main()
