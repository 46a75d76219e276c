"""CLI start-up: median wall time of `contentq --help` and `contentq queue status` against `python -c pass`.

    python bench/startup.py [--runs 15]

All run as fresh processes of this interpreter, interleaved (so a change in the machine's load hits them
alike), against an embedded Valkey started once for `queue status`. Prints each median and its ratio to the bare
interpreter (target <= 4x), and the packages whose import costs each command most (-X importtime). The last row
is a floor: a process that only imports the libraries `queue status` cannot do without (Typer, Rich's table,
redis-py, RQ, pydantic-settings), and does nothing with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentq.runtime.redis import EmbeddedServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "contentq --help": ["-m", "contentq", "--help"],
    "contentq queue status": ["-m", "contentq", "queue", "status"],
    "floor of queue status": ["-c", "import typer, rich.table, redis, rq, pydantic_settings"],
}


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(args)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def heavy_imports(args: list[str], env: dict[str, str], top: int = 6) -> list[str]:
    """The packages whose import costs the command most (self time of all their modules, -X importtime)."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, cwd=ROOT, capture_output=True)
    by_package: dict[str, int] = {}
    for line in done.stderr.decode(errors="replace").splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[0].isdigit():
            package = parts[2].split(".")[0]
            by_package[package] = by_package.get(package, 0) + int(parts[0])
    ranked = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    return [f"{package} {us / 1000:.0f} ms" for package, us in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / "redis")
        server.start()
        try:
            env = {**os.environ, "CONTENTQ_HOME": str(Path(tmp) / "home"), "CONTENTQ_REDIS_URL": server.url,
                   "PYTHONPATH": str(ROOT)}  # fmt: skip
            for argv in COMMANDS.values():  # warm the OS caches and create the database once
                timed(argv, env)
            times: dict[str, list[float]] = {name: [] for name in COMMANDS}
            for _ in range(args.runs):
                for name, argv in COMMANDS.items():
                    times[name].append(timed(argv, env))
            base = statistics.median(times["python -c pass"])
            for name, values in times.items():
                median = statistics.median(values)
                print(f"{name:24} median {median * 1000:6.0f} ms  ({median / base:4.1f}x python -c pass)")
            for name in ("contentq --help", "contentq queue status"):
                print(f"{name}: most costly imports: {', '.join(heavy_imports(COMMANDS[name], env))}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
