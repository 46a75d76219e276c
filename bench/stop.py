"""How long a worker takes to stop: idle `contentq worker` after SIGTERM, `worker --burst` on empty queues,
`contentq demo` end to end, and `supervisorctl stop` of every program of the rendered supervisor config.

    python bench/stop.py [--runs 5]

Prints the median and the worst of each, and the installed redis-py and RQ (redis-py 8.2 made a stop wait out
the pub/sub thread's read: up to 60 s before issue 30).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
import rq  # noqa: E402
from rq import Worker  # noqa: E402

from contentq.ops import supervisor as sv  # noqa: E402
from contentq.runtime.redis import EmbeddedServer  # noqa: E402
from contentq.settings import load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"error: timed out waiting for {what}")
        time.sleep(0.1)


def idle_sigterm(env: dict[str, str], conn: redis.Redis) -> float:
    before = {w.name for w in Worker.all(connection=conn)}
    proc = subprocess.Popen([sys.executable, "-m", "contentq", "worker", "maintenance"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(lambda: {w.name for w in Worker.all(connection=conn)} - before, 60, "the worker to register")
    time.sleep(2.0)  # idle: its pub/sub thread is reading
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    return time.perf_counter() - started


def timed_run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "contentq", *argv], env=env, cwd=ROOT, capture_output=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"error: contentq {' '.join(argv)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def supervisor_stop(tmp: Path, redis_url: str | None) -> tuple[float, int]:
    """`supervisorctl stop all` of the rendered config: on this Valkey, or (None) with the embedded Valkey and its
    keeper, which waits for the workers to unregister before it stops Valkey."""
    home = tmp / ("supervised" if redis_url else "supervised-embedded")
    home.mkdir()
    settings = load_settings(home=home, redis_url=redis_url)
    conf = sv.write(settings, tmp / f"supervisord-{home.name}.conf", standalone=True,
                    extra_env={"PYTHONPATH": str(ROOT), "CONTENTQ_WEB_PORT": "0"})  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    daemon = subprocess.Popen([str(BIN / "supervisord"), "-n", "-c", str(conf)], env=env, cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def ctl(*args: str) -> str:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(conf), *args], capture_output=True,
                              text=True, timeout=180).stdout  # fmt: skip

    try:
        embedded = EmbeddedServer(settings.redis_dir)
        if redis_url is None:
            wait_until(embedded.ping, 60, "the supervised Valkey")
        conn = redis.Redis.from_url(redis_url or embedded.url)
        workers = sum(g.numprocs for g in sv.worker_groups(settings))
        wait_until(lambda: len(Worker.all(connection=conn)) >= workers, 90, "the supervised workers to register")
        wait_until(lambda: "STARTING" not in ctl("status"), 60, "every program RUNNING")
        time.sleep(2.0)
        programs = sum(1 for line in ctl("status").splitlines() if "RUNNING" in line)
        started = time.perf_counter()
        ctl("stop", "all")
        return time.perf_counter() - started, programs
    finally:
        ctl("shutdown")
        daemon.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"redis-py {redis.__version__}, RQ {rq.__version__}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        server = EmbeddedServer(tmp / "redis")
        server.start()
        try:
            env = {**os.environ, "CONTENTQ_HOME": str(tmp / "home"), "CONTENTQ_REDIS_URL": server.url,
                   "PYTHONPATH": str(ROOT)}  # fmt: skip
            conn = redis.Redis.from_url(server.url)
            rows = {
                "idle worker, SIGTERM to exit": [idle_sigterm(env, conn) for _ in range(args.runs)],
                "worker --burst, empty queues": [timed_run(["worker", "--burst"], env) for _ in range(args.runs)],
            }
            demo_env = {k: v for k, v in env.items() if k != "CONTENTQ_REDIS_URL"}  # the demo's own Valkey
            demo = []
            for i in range(max(1, args.runs // 2)):
                demo_env["CONTENTQ_HOME"] = str(tmp / f"demo-{i}")
                demo.append(timed_run(["demo"], demo_env))
            rows["contentq demo, end to end"] = demo
            took, programs = supervisor_stop(tmp, server.url)
            rows[f"supervisorctl stop all ({programs} programs)"] = [took]
            took, programs = supervisor_stop(tmp, None)
            rows[f"the same, embedded Valkey ({programs} programs)"] = [took]
            for what, values in rows.items():
                print(f"{what:40} median {statistics.median(values):6.2f} s   worst {max(values):6.2f} s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
