"""What the budget gate costs a paid call as the `usage` table grows (docs/costs.md, "Budgets").

    python bench/budget_gate.py [--rows 200000] [--routes 10] [--calls 500]

Fills `usage` with `rows` rows spread over the 60 days before the last hour of a month and `routes` routes (each
with a daily and a monthly budget, and an overall [budget] too, none of them spent), then, with the clock at that
last hour (time-machine: the month's sums are the largest they get), times `budget.check` for one route, `calls`
times: four sums (the route's day and month, all routes' day and month). Prints the wall and CPU milliseconds per
check, median and p95, next to the table's size.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import time_machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentq.clock import iso, now  # noqa: E402
from contentq.rewrite.budget import check  # noqa: E402
from contentq.runtime.config import route_of  # noqa: E402
from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.settings import load_settings  # noqa: E402

MONTH_END = datetime(2030, 1, 31, 23, 0, tzinfo=UTC)
"""The clock of the run: a month's last hour, when its sums cover the most rows."""


def routes_file(routes: int) -> str:
    body = "[budget]\ndaily = 1000000\nmonthly = 1000000\n"
    for n in range(routes):
        body += f'\n[routes.r{n}]\ntarget = "@t{n}"\nsources = ["@s{n}"]\n\n[routes.r{n}.budget]\n'
        body += "daily = 1000000\nmonthly = 1000000\n"
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--routes", type=int, default=10)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument(
        "--plain-index", action="store_true", help="index (route, at) and (at) without the cost (before migration 215)"
    )
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "contentq.toml").write_text(routes_file(args.routes), encoding="utf-8")
        rt = Runtime(load_settings(home=home, redis_url="redis://127.0.0.1:1/0"))  # never dialled
        set_process_runtime(rt)
        rng = random.Random(7)
        traveller = time_machine.travel(MONTH_END, tick=True)
        traveller.start()
        start = now()
        rows = [
            (iso(start - timedelta(seconds=rng.uniform(0, 60 * 86400))), f"r{rng.randrange(args.routes)}", 0.001)
            for _ in range(args.rows)
        ]
        with rt.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO usage (at, route, model, tokens_in, tokens_out, cost) VALUES (?, ?, 'gpt-4o-mini', 500,"
                " 100, ?)",
                rows,
            )
        if args.plain_index:
            rt.store.execute("DROP INDEX usage_route_at")
            rt.store.execute("DROP INDEX usage_at_cost")
            rt.store.execute("CREATE INDEX usage_route_at ON usage(route, at)")
            rt.store.execute("CREATE INDEX usage_at ON usage(at)")
        route = route_of(rt, "r0")
        wall, cpu = [], []
        for _ in range(args.calls):
            t0, c0 = time.perf_counter(), time.process_time()
            verdict = check(rt, route, "rewrite")
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            assert verdict.allowed
        wall.sort()
        p95 = wall[int(len(wall) * 0.95) - 1]
        print(
            f"usage rows {args.rows:,} over 60 days (half of them this month), {args.routes} routes, "
            f"{'plain' if args.plain_index else 'covering'} indexes: budget check "
            f"median {statistics.median(wall):.2f} ms wall, p95 {p95:.2f} ms, {statistics.median(cpu):.2f} ms CPU"
        )
        traveller.stop()
        rt.close()


if __name__ == "__main__":
    main()
