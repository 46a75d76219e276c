"""contentq's own cost per tracked job, without Redis: what bench/overhead.py's ratio is made of, minus the noise.

    python bench/tracking_cost.py [--jobs 1000] [--rounds 8]

Each round records `jobs` no-op jobs (`tracking.enqueue` with the RQ push left out) and runs each through
`run_tracked` in this process: the SQLite statements a tracked job costs at enqueue, start and end. Prints the
CPU milliseconds per job of every round: they must stay flat as the jobs table grows.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contentq.runtime.tracking as tracking  # noqa: E402
from contentq.runtime.context import Runtime, set_process_runtime  # noqa: E402
from contentq.runtime.execute import run_tracked  # noqa: E402
from contentq.settings import load_settings  # noqa: E402


def no_push(*args: Any, **kwargs: Any) -> None:
    """The RQ side is bench/overhead.py's business."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    tracking.push = no_push  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(load_settings(home=Path(tmp) / "home", redis_url="redis://127.0.0.1:1/0"))  # never dialled
        set_process_runtime(rt)
        cpu_ms = []
        for round_no in range(args.rounds):
            started = time.process_time()
            for i in range(args.jobs):
                run_tracked(tracking.enqueue(rt, "noop", f"r{round_no}-{i}")["id"])
            cpu_ms.append((time.process_time() - started) * 1000 / args.jobs)
        done = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'")
        assert done == args.jobs * args.rounds, f"only {done} jobs succeeded"
        print(f"CPU ms per tracked job (enqueue + start + end), by round of {args.jobs}: "
              f"{', '.join(f'{ms:.3f}' for ms in cpu_ms)}; median {statistics.median(cpu_ms):.3f}")  # fmt: skip
        rt.close()


if __name__ == "__main__":
    main()
