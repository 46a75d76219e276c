"""Throughput of no-op jobs: contentq's tracked path vs bare RQ, same worker class, same Valkey, one run.

Each round runs both paths back to back (alternating which goes first, so drift in machine load hits both
alike): N jobs enqueued, then drained by one in-process burst ContentqWorker; throughput counts enqueue and
execution. Prints jobs/s of each path and the median of the per-round ratios (target ≥ 0.88).

    python bench/overhead.py [--jobs 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rq import Queue, Retry  # noqa: E402

from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.runtime.tracking import enqueue  # noqa: E402
from contentq.runtime.worker import ContentqWorker  # noqa: E402
from contentq.settings import load_settings  # noqa: E402


def drain(rt: Runtime) -> None:
    queue = Queue("maintenance", connection=rt.redis)
    worker = ContentqWorker([queue], connection=rt.redis, runtime=rt, heartbeat_ttl=30)
    worker.work(burst=True, logging_level="WARNING")


def tracked(rt: Runtime, n: int, round_no: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        enqueue(rt, "noop", f"r{round_no}-{i}")
    drain(rt)
    elapsed = time.perf_counter() - start
    done = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded' AND key LIKE ?", (f"r{round_no}-%",))
    assert done == n, f"only {done} of {n} tracked jobs succeeded"
    return n / elapsed


def bare(rt: Runtime, n: int, round_no: int) -> float:
    policy = rt.settings.policy("maintenance")
    queue = Queue("maintenance", connection=rt.redis)
    intervals = policy.retry_intervals()
    start = time.perf_counter()
    for i in range(n):
        queue.enqueue(
            "contentq.jobs.maintenance.bare_noop",
            job_id=f"bare-r{round_no}-{i}",
            job_timeout=policy.timeout,
            retry=Retry(max=len(intervals), interval=intervals),
            result_ttl=rt.settings.job_result_ttl,
            description=f"noop r{round_no}-{i}",
        )
    drain(rt)
    elapsed = time.perf_counter() - start
    assert queue.count == 0
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / "redis")
        server.start()
        try:
            settings = load_settings(home=Path(tmp) / "home", redis_url=server.url)
            rt = Runtime(settings)
            set_process_runtime(rt)
            rates: dict[str, list[float]] = {"bare": [], "tracked": []}
            for round_no in range(args.rounds):
                if round_no % 2:
                    rates["tracked"].append(tracked(rt, args.jobs, round_no))
                    rates["bare"].append(bare(rt, args.jobs, round_no))
                else:
                    rates["bare"].append(bare(rt, args.jobs, round_no))
                    rates["tracked"].append(tracked(rt, args.jobs, round_no))
            ratios = [t / b for t, b in zip(rates["tracked"], rates["bare"], strict=True)]
            print(f"jobs per round: {args.jobs}, rounds: {args.rounds}, worker: ContentqWorker (in-process)")
            for name, label in (("bare", "bare RQ:"), ("tracked", "contentq:")):
                values = rates[name]
                print(f"{label:14} {statistics.median(values):6.0f} jobs/s median  "
                      f"(rounds: {', '.join(f'{r:.0f}' for r in values)})")  # fmt: skip
            print(f"ratio tracked/bare per round: {', '.join(f'{r:.2f}' for r in ratios)}")
            print(f"ratio tracked/bare, median: {statistics.median(ratios):.2f}  (target >= 0.88)")
            rt.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
