"""Batch rewrites against direct calls: requests to the provider and cost for N posts.

    python bench/batch.py [--posts 100] [--invalid 0.1]

Two routes, one `rewrite_mode = "direct"` and one `"batch"`, get the same N posts; the rewrite jobs (and the
batch's job) run in this process against the fake OpenAI of the tests (tests/fake_openai_batch.py: Files,
Batches and chat completions over real HTTP, driven by the real OpenAI SDK). The scripted model answers a
share `--invalid` of the posts with an answer the checks refuse the first time (asked again directly, in both
modes). Prints, per mode: HTTP requests to the provider by endpoint, model calls recorded in `usage` (those at
the batch price apart), the cost, and what the posts ended as.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentq import notify  # noqa: E402
from contentq.clock import iso  # noqa: E402
from contentq.rewrite.enqueue import enqueue_rewrites  # noqa: E402
from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.runtime.worker import run_worker  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from tests.fake_openai_batch import API_KEY, FakeOpenAIBatch, chat_completion  # noqa: E402

ROUTES = """
[routes.{name}]
target = "@{name}_channel"
sources = ["@{name}_donor"]
prompt = "Rewrite for our readers."
style_examples = 0
rewrite_mode = "{name}"
[routes.{name}.schedule]
asap = true
"""

DONOR = "<b>Post {i}</b>: the city council approved a new park near the river; it opens in spring next year."


def model(invalid_every: int) -> Any:
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = " ".join(str(m.get("content") or "") for m in body["messages"])
        number = int(re.findall(r"Post (\d+)", text)[-1])
        retry = any(m["role"] == "assistant" for m in body["messages"])
        bold = not (invalid_every and number % invalid_every == 0 and not retry)
        words = f"Park {number}: the council approved a new riverside park; it opens next spring."
        content = (
            f'{{"text": "{"<b>" + words + "</b>" if bold else words}", "title": null, "image_prompt": null,'
            ' "skip": false, "skip_reason": null}'
        )
        return 200, chat_completion(content, model=body["model"], tokens_in=450, tokens_out=120)

    return answer


def run(mode: str, posts: int, invalid: float, valkey: EmbeddedServer, tmp: Path) -> dict[str, Any]:
    home = tmp / mode
    home.mkdir()
    (home / "contentq.toml").write_text(ROUTES.format(name=mode))
    fake = FakeOpenAIBatch(home / "openai.sqlite", answer=model(round(1 / invalid) if invalid else 0))
    fake.start()
    settings = load_settings(
        home=home, redis_url=valkey.url, openai_base_url=fake.base_url, openai_api_key=API_KEY,
        openai_batch_gather=0.5, openai_batch_poll=0.2, worker_maintenance_interval=1,
    )  # fmt: skip
    rt = Runtime(settings)
    set_process_runtime(rt)
    rt.redis.flushall()
    try:
        ids = []
        with rt.store.transaction() as conn:
            for i in range(posts):
                stamp = iso()
                cursor = conn.execute(
                    "INSERT INTO posts (route, source, source_msg_id, kind, text_html, collected_at, posted_at,"
                    " state, updated_at) VALUES (?, ?, ?, 'text', ?, ?, ?, 'collected', ?)",
                    (mode, f"@{mode}_donor", i + 1, DONOR.format(i=i), stamp, stamp, stamp),
                )
                ids.append(cursor.lastrowid)
        started = time.monotonic()
        enqueue_rewrites(rt, [int(i) for i in ids if i is not None])
        while rt.store.scalar(
            "SELECT COUNT(*) FROM jobs WHERE queue = 'rewrite' AND status IN ('queued', 'in_progress')"
        ):
            run_worker(rt, ["rewrite"], burst=True)
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        usage = rt.store.one(
            "SELECT COUNT(*) AS calls, SUM(batch) AS batch, SUM(cost) AS cost FROM usage WHERE error IS NULL"
        )
        states = {r["state"]: r["n"] for r in rt.store.query("SELECT state, COUNT(*) AS n FROM posts GROUP BY state")}
        requests = {e: fake.calls(e) for e in ("files", "batches", "batch", "file_content", "chat")}
        return {"mode": mode, "requests": requests, "usage": usage, "states": states, "seconds": elapsed}
    finally:
        rt.close()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--invalid", type=float, default=0.1, help="share of posts whose first answer is refused")
    args = parser.parse_args()
    notify.install()
    with tempfile.TemporaryDirectory(prefix="cq-batch-") as tmp:
        valkey = EmbeddedServer(Path(tmp) / "valkey")
        valkey.start()
        try:
            results = [run(mode, args.posts, args.invalid, valkey, Path(tmp)) for mode in ("direct", "batch")]
        finally:
            valkey.stop()
    print(f"{args.posts} posts, {args.invalid:.0%} of first answers refused by the checks (asked again directly)\n")
    print(f"{'mode':<7} {'chat':>5} {'upload':>6} {'create':>6} {'polls':>5} {'files':>5} "
          f"{'calls':>5} {'batch':>5} {'cost $':>9} {'written':>7}")  # fmt: skip
    for r in results:
        q, u = r["requests"], r["usage"]
        print(f"{r['mode']:<7} {q['chat']:>5} {q['files']:>6} {q['batches']:>6} {q['batch']:>5} "
              f"{q['file_content']:>5} {u['calls']:>5} {u['batch'] or 0:>5} {u['cost'] or 0:>9.5f} "
              f"{r['states'].get('rewritten', 0) + r['states'].get('scheduled', 0):>7}")  # fmt: skip
    direct, batch = (r["usage"]["cost"] or 0 for r in results)
    if direct:
        print(f"\nbatch / direct cost: {batch / direct:.0%} (model calls recorded at the batch price: "
              f"CONTENTQ_OPENAI_BATCH_PRICE_SHARE)")  # fmt: skip


if __name__ == "__main__":
    main()
