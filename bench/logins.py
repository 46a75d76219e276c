"""Panel logins (issue 24): what a login costs, and that a wrong password costs the same for a name that exists and
for one that does not (an unknown name is verified against a dummy argon2 hash), so the answer's time tells an
attacker nothing; and what the throttle costs per refused try.

Against `contentq web`'s app on uvicorn (a real HTTP server on loopback), a fresh CONTENTQ_HOME, one owner user:
- N logins each of: an unknown name, a known name with a wrong password, the right password (each from its own
  client address, so the throttle never steps in): mean, p50, p95 and the difference of the two failing paths;
- then M wrong passwords against one name from one address: how many reached the hasher, and the time of a
  refused (throttled) try.

    python bench/logins.py [--n 30] [--throttled 1000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from contentq.ops.stats import percentile  # noqa: E402
from contentq.people import users  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from contentq.web.app import create_app  # noqa: E402

PASSWORD = "a-long-owner-password"


def serve(rt: Runtime) -> tuple[uvicorn.Server, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(rt.settings, rt), host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed(client: httpx.Client, name: str, password: str, address: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.post("/login", data={"name": name, "password": password}, headers={"X-Forwarded-For": address})
    return (time.perf_counter() - started) * 1000, response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="logins per path")
    parser.add_argument("--throttled", type=int, default=1000, help="wrong passwords against one name")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            home=Path(folder), web_login_max_failures=10_000, web_login_max_failures_per_address=100_000
        )
        rt = Runtime(settings)
        users.add_user(rt, "olga", "owner", PASSWORD)
        server, url = serve(rt)
        paths = {"unknown name": ("nobody", "a-wrong-password"), "wrong password": ("olga", "a-wrong-password"),
                 "right password": ("olga", PASSWORD)}  # fmt: skip
        times: dict[str, list[float]] = {path: [] for path in paths}
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
            for round_ in range(args.n):  # interleaved: the machine's load falls on every path alike
                for path, (name, password) in paths.items():
                    ms, status = timed(client, name, password, f"10.0.{round_}.1")
                    assert status == (303 if path == "right password" else 401), (path, status)
                    times[path].append(ms)
        print(f"argon2 parameters: {users.hasher().time_cost} passes, {users.hasher().memory_cost} KiB, "
              f"{users.hasher().parallelism} lanes; {args.n} logins per path")  # fmt: skip
        for path, values in times.items():
            print(f"  {path:15} mean {statistics.mean(values):7.1f} ms  p50 {percentile(values, 50):7.1f} ms  "
                  f"p95 {percentile(values, 95):7.1f} ms")  # fmt: skip
        unknown, wrong = statistics.mean(times["unknown name"]), statistics.mean(times["wrong password"])
        print(f"  unknown − wrong password: {unknown - wrong:+.1f} ms ({(unknown - wrong) / wrong:+.1%})")
        server.should_exit = True

        settings = load_settings(home=Path(folder))  # the default throttle
        rt = Runtime(settings)
        server, url = serve(rt)
        refused: list[float] = []
        started = time.perf_counter()
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
            for n in range(args.throttled):
                ms, status = timed(client, "olga", f"guess-{n}", "10.9.9.9")
                if status == 429:
                    refused.append(ms)
        elapsed = time.perf_counter() - started
        verifies = rt.store.scalar(
            "SELECT COUNT(*) FROM login_failures WHERE address = '10.9.9.9'"
        )  # a refused try is neither verified nor kept
        print(f"{args.throttled} wrong passwords against one name in {elapsed:.1f} s: {verifies} reached argon2, "
              f"{len(refused)} refused (429) at p50 {percentile(refused, 50):.1f} ms, "
              f"p95 {percentile(refused, 95):.1f} ms")  # fmt: skip
        server.should_exit = True


if __name__ == "__main__":
    main()
