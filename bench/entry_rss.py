"""Memory of each long-running entry point after start, and what it imported to get there.

    python bench/entry_rss.py [--settle 3] [--only web,rewrite] [--fresh-db]

Each entry point (as supervisor starts it) runs alone against an embedded Valkey in a fresh CONTENTQ_HOME, with
the shared fakes of tests/ for Telegram and the bot: `worker rewrite`, `worker imagegen maintenance`,
`worker publish collect`, `web`, `listen`, `bot`. Once it is up (the worker registered, the panel answering,
the listener connected, the bot logged in) and --settle seconds later, it prints the process's RSS and PSS, then
the top-level packages it imported (python -X importtime) that cost most memory on their own: the RSS of
`python -c "import PACKAGE"` over that of `python -c pass` (a package's own dependencies included, so the
figures overlap and do not add up). bench/footprint.py measures the whole deployment under supervisord.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contentq.runtime.redis import EmbeddedServer  # noqa: E402

MIB = 1024 * 1024
ADMIN = 111
ROUTES = '[routes.r0]\ntarget = "@target0"\nsources = ["@donor0"]\nrewriter = "llm"\nprompt = "Rewrite."\n'
ENTRY_POINTS = {
    "rewrite": ["worker", "rewrite"],
    "light": ["worker", "imagegen", "maintenance"],
    "telegram": ["worker", "publish", "collect"],
    "web": ["web"],
    "listen": ["listen"],
    "bot": ["bot"],
}
WORTH = 1.0
"""Packages costing less than this many MiB on their own are not listed."""


def kib(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def packages(stderr: str) -> list[str]:
    """Top-level packages of the modules -X importtime reported, in import order."""
    seen: dict[str, None] = {}
    for line in stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[0].isdigit():
            seen.setdefault(parts[2].split(".")[0].lstrip("_") or parts[2], None)
    return list(seen)


_alone: dict[str, int] = {}


def rss_of(code: str) -> int:
    if code not in _alone:
        probe = f"{code}\nimport pathlib\nprint(pathlib.Path('/proc/self/status').read_text())"
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
        _alone[code] = int(line.split()[1]) * 1024 if done.returncode == 0 else 0
    return _alone[code]


def up_check(name: str, pid: int, home: Path, port: int, url: str, bot_db: Path) -> Callable[[], bool]:
    if name == "web":
        return lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5).status == 200
    if name == "listen":
        from contentq.store.db import open_store

        def connected() -> bool:
            store = open_store(home / "contentq.db")
            try:
                return bool(store.scalar("SELECT state FROM listeners") == "connected")
            finally:
                store.close()

        return connected
    if name == "bot":
        from tests.shared_bot import logins

        return lambda: pid in logins(bot_db)
    import redis
    from rq import Worker

    conn = redis.Redis.from_url(url)
    return lambda: any(w.pid == pid for w in Worker.all(connection=conn))


def measure(
    name: str, argv: list[str], tmp: Path, server: EmbeddedServer, settle: float, fresh: bool = False
) -> dict[str, object]:
    home = tmp / name
    home.mkdir()
    (home / "contentq.toml").write_text(ROUTES)
    bot_db = tmp / f"{name}-bot.db"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
    env.update(
        PYTHONPATH=str(ROOT), CONTENTQ_HOME=str(home), CONTENTQ_REDIS_URL=server.url, CONTENTQ_WEB_PORT=str(port),
        CONTENTQ_TG_GATEWAY="tests.shared_telegram:gateway_from_env", CONTENTQ_FAKE_TG_DB=str(tmp / f"{name}-tg.db"),
        CONTENTQ_BOT_GATEWAY="tests.shared_bot:gateway_from_env", CONTENTQ_FAKE_BOT_DB=str(bot_db),
        CONTENTQ_BOT_TOKEN="123456:entry-rss", CONTENTQ_BOT_ADMINS=str(ADMIN),
        CONTENTQ_OPENAI_API_KEY="sk-entry-rss",
    )  # fmt: skip
    # The database exists already, as in a deployment, unless --fresh-db: then this process migrates it, as the
    # first program to open a new or upgraded database does.
    if not fresh:
        subprocess.run([sys.executable, "-m", "contentq", "db", "migrate"], env=env, cwd=home, capture_output=True,
                       check=False, timeout=120)  # fmt: skip
    errors = (tmp / f"{name}.err").open("w+")  # a file, not a pipe: nothing reads it before the process stops
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "contentq", *argv], env=env, cwd=home,
                            stdout=subprocess.DEVNULL, stderr=errors, text=True)  # fmt: skip
    check = up_check(name, proc.pid, home, port, server.url, bot_db)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                errors.seek(0)
                raise SystemExit(f"error: {name} exited ({proc.returncode}): {errors.read()[-2000:]}")
            try:
                if check():
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"error: {name} not up after 120 s")
            time.sleep(0.3)
        time.sleep(settle)
        rss = kib(Path(f"/proc/{proc.pid}/status"), "VmRSS")
        pss = kib(Path(f"/proc/{proc.pid}/smaps_rollup"), "Pss")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errors.seek(0)
        err = errors.read()
        errors.close()
    return {"rss": rss, "pss": pss, "packages": packages(err)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after it is up before reading")
    parser.add_argument("--fresh-db", action="store_true", help="each entry point migrates a new database")
    parser.add_argument("--only", default="", help="comma-separated names: " + ",".join(ENTRY_POINTS))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ENTRY_POINTS)
    base = rss_of("pass")
    print(f"python -c pass: RSS {base / MIB:.1f} MiB")
    with tempfile.TemporaryDirectory(prefix="cq-entry-rss-") as tmp_name:
        tmp = Path(tmp_name)
        server = EmbeddedServer(tmp / "redis")
        server.start()
        try:
            for name in names:
                got = measure(name, ENTRY_POINTS[name], tmp, server, args.settle, args.fresh_db)
                pkgs = [str(p) for p in got["packages"]]  # type: ignore[attr-defined]
                costs = {p: rss_of(f"import {p}") - base for p in pkgs if p.isidentifier() and p != "contentq"}
                heavy = sorted(((c, p) for p, c in costs.items() if c >= WORTH * MIB), reverse=True)
                print(f"\ncontentq {' '.join(ENTRY_POINTS[name]):<28} RSS {got['rss'] / MIB:6.1f} MiB"  # type: ignore[operator]
                      f"  PSS {got['pss'] / MIB:6.1f} MiB  ({len(pkgs)} top-level packages)")  # type: ignore[operator]  # fmt: skip
                print("  alone: " + ", ".join(f"{p} {c / MIB:.1f}" for c, p in heavy))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
