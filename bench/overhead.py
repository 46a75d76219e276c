"""Throughput of no-op jobs: contentq's tracked path vs bare RQ, same worker class, same Valkey, one run.

Each round enqueues N jobs and drains them with one in-process burst ContentqWorker; throughput counts
both enqueue and execution. Prints jobs/s for each path and the ratio (target ≥ 0.8).

    python bench/overhead.py [--jobs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
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
    worker = ContentqWorker([queue], connection=rt.redis, heartbeat_ttl=30)
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
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
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
            for round_no in range(args.rounds):  # alternate so drift hits both paths alike
                rates["bare"].append(bare(rt, args.jobs, round_no))
                rates["tracked"].append(tracked(rt, args.jobs, round_no))
            best_bare, best_tracked = max(rates["bare"]), max(rates["tracked"])
            print(f"jobs per round: {args.jobs}, rounds: {args.rounds}, worker: ContentqWorker (in-process)")
            print(f"bare RQ:       {best_bare:8.0f} jobs/s  (rounds: {', '.join(f'{r:.0f}' for r in rates['bare'])})")
            print(
                f"contentq:      {best_tracked:8.0f} jobs/s  "
                f"(rounds: {', '.join(f'{r:.0f}' for r in rates['tracked'])})"
            )
            print(f"ratio tracked/bare: {best_tracked / best_bare:.2f}  (target >= 0.80)")
            rt.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
