"""What Telegram accounts add to each publish and collect job: the lookups before a send or a fetch.

    python bench/accounts.py [--accounts 20] [--routes 200] [--jobs 5000]

A publication asks which account posts to the route's target (`poster_of`), whether that account is paused
(`pause_reason`) or waiting out a flood of its sends (`flood_left`), and its budget (`send_budget`); a collect
asks for the reader and its fallbacks (`readers_of`) and reports the account healthy (`report_ok`, one write a
minute per process). Prints the wall-clock microseconds per job of each, with `accounts` accounts (half of them
with a recorded health, one logged out) and `routes` routes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentq import accounts  # noqa: E402
from contentq.accounts import Problem  # noqa: E402
from contentq.notify import install  # noqa: E402
from contentq.routes import parse_routes  # noqa: E402
from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.settings import load_settings  # noqa: E402


def per_job(fn: Callable[[int], object], jobs: int) -> float:
    started = time.perf_counter()
    for i in range(jobs):
        fn(i)
    return (time.perf_counter() - started) * 1e6 / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    install()
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(load_settings(home=Path(tmp) / "home", redis_url="redis://127.0.0.1:1/0"))  # never dialled
        set_process_runtime(rt)
        names = [f"acc{i}" for i in range(args.accounts)]
        for i, name in enumerate(names):
            accounts.add_account(rt, name, proxy=f"socks5://127.0.0.1:{10000 + i}", send_budget=10)
            if i % 2:
                accounts.report_ok(rt, name)
        accounts.report_problem(rt, names[1], Problem("logged_out", "bench"))
        config = parse_routes({"routes": {
            f"r{i}": {"target": f"@out{i}", "sources": [f"@in{i}"], "rewriter": "none",
                      "account": names[i % len(names)], "fallback_accounts": [names[(i + 1) % len(names)]],
                      "schedule": {"asap": True}}
            for i in range(args.routes)
        }})  # fmt: skip
        routes = list(config.routes.values())

        def publish_lookups(i: int) -> None:
            route = routes[i % len(routes)]
            name = accounts.poster_of(rt.store, route, route.target)
            if accounts.pause_reason(rt, name) is None:
                accounts.flood_left(rt, name, "send")
                accounts.send_budget(rt, name)

        def collect_lookups(i: int) -> None:
            route = routes[i % len(routes)]
            for name in accounts.readers_of(rt.store, route, route.sources[0]):
                if accounts.pause_reason(rt, name) is None:
                    accounts.report_ok(rt, name)
                    break

        publish_us = per_job(publish_lookups, args.jobs)
        collect_us = per_job(collect_lookups, args.jobs)
        listing_ms = per_job(lambda i: accounts.health_rows(rt, config), 20) / 1000
        rt.close()
    print(f"accounts: {args.accounts}, routes: {args.routes}, jobs: {args.jobs}")
    print(f"publish: account lookups before a send   {publish_us:8.1f} µs per job")
    print(f"collect: reader, fallbacks, health write  {collect_us:8.1f} µs per job")
    print(f"accounts list / panel / doctor rows       {listing_ms:8.2f} ms per listing")


if __name__ == "__main__":
    main()
