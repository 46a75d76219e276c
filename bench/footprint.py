"""Footprint: the memory and idle CPU of a standard deployment, on the embedded defaults, under supervisord.

    python bench/footprint.py [--jobs 1000] [--idle 60] [--sources 10] [--keep]

What runs is what `contentq supervisor render --standalone` gives for the default settings, started by the real
supervisord of this virtual environment: the embedded Valkey (`contentq redis serve` and its valkey-server), the
worker programs with their default `numprocs`, the listener (a route reads donor channels), the web panel, and
the admin bot when this contentq has a `contentq bot` command. The outside world is faked: Telegram is
tests/shared_telegram.py (its channels in a SQLite file every process shares: donor messages for collect and
the listener, sends for publish), the LLM is llmock on loopback answering at once.

It prints, against the targets of issue 27 (≤ 300 MiB in total after 1,000 jobs; idle ≤ 1 % of one core):
- after start (every program up, workers registered, the panel answering): RSS and PSS per process, total;
- after --jobs mixed jobs (collect, rewrite through the LLM, publish, maintenance; the listener takes the
  messages of half of the donors live; the panel's API read meanwhile): the same;
- idle CPU over --idle seconds once the work is done: utime+stime of every process of the set (Valkey
  included) from /proc, as a share of one core.

RSS counts a page shared by several processes (the interpreter's code, libraries) in each of them; PSS divides
it between them (/proc/PID/smaps_rollup), so the PSS total is what the set really costs the machine.
supervisord itself is shown apart (systemd could run the same programs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmock.pytest_plugin import LLMock  # noqa: E402
from llmock.testing import LLMockServer  # noqa: E402

from contentq.ops import supervisor as sv  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.runtime.redis import embedded_server  # noqa: E402
from contentq.runtime.tracking import enqueue  # noqa: E402
from contentq.settings import load_settings  # noqa: E402
from tests.shared_telegram import post_donor, visible  # noqa: E402

MIB = 1024 * 1024
TARGET_MIB = 300
TARGET_IDLE_CPU = 0.01
BIN = Path(sys.executable).parent
SUPERVISORD = BIN / "supervisord"
SUPERVISORCTL = BIN / "supervisorctl"

ROUTE = """
[routes.r{n}]
target = "@target{n}"
sources = ["@donor{n}"]
rewriter = "llm"
prompt = "Rewrite for the channel's readers."
images = "none"
[routes.r{n}.schedule]
asap = true
"""

ANSWER = json.dumps(
    {"text": "<b>News</b> rewritten for the channel.", "title": "News", "image_prompt": None, "skip": False,
     "skip_reason": None}
)  # fmt: skip

WORDS = str.split(
    "market rates bank energy price oil gas report city council vote budget school river bridge storm rain "
    "team match goal coach player season record museum opening artist film festival award science study "
    "space launch rocket satellite court ruling law police traffic road airport flight train strike union "
    "harbour ferry island summer winter garden library concert orchestra theatre ballet novel poet painter"
)


@dataclass
class Proc:
    pid: int
    name: str
    rss: int
    pss: int
    cpu_ticks: int  # utime + stime (+ reaped children's), in clock ticks


def _read_stat(pid: int) -> tuple[int, int]:
    """(ppid, utime+stime+cutime+cstime) from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def _kib(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid, _ = _read_stat(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def label(pid: int, programs: dict[int, str]) -> str:
    if pid in programs:
        return programs[pid]
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()  # supervisord, valkey-server
    except OSError:
        return str(pid)


def snapshot(root: int, programs: dict[int, str]) -> list[Proc]:
    procs = []
    for pid in [root, *descendants(root)]:
        try:
            _, ticks = _read_stat(pid)
            rss = _kib(Path(f"/proc/{pid}/status"), "VmRSS")
            pss = _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        procs.append(Proc(pid, label(pid, programs), rss, pss, ticks))
    return sorted(procs, key=lambda p: p.name)


class Deployment:
    def __init__(self, tmp: Path, sources: int, llm_url: str) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir()
        (self.home / "contentq.toml").write_text("".join(ROUTE.format(n=n) for n in range(sources)))
        self.tg_db = tmp / "telegram.db"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
        self.env.update(
            CONTENTQ_HOME=str(self.home),
            CONTENTQ_TG_GATEWAY="tests.shared_telegram:gateway_from_env",
            CONTENTQ_FAKE_TG_DB=str(self.tg_db),
            CONTENTQ_OPENAI_BASE_URL=llm_url,
            CONTENTQ_OPENAI_API_KEY="sk-footprint-bench",
            CONTENTQ_PUBLISH_MIN_INTERVAL="0",
            CONTENTQ_PUBLISH_ACCOUNT_BUDGET="0",  # no pacing of the sends: the run takes minutes, not a quarter hour
        )
        # The default settings: no Redis URL (embedded Valkey), default concurrency and intervals.
        self.settings = load_settings(home=self.home)
        extra = {"PYTHONPATH": str(REPO), "CONTENTQ_WEB_PORT": str(self.port)}
        self.conf = sv.write(self.settings, tmp / "supervisord.conf", standalone=True, extra_env=extra)
        self.bot = self._bot_program(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def _bot_program(self, extra: dict[str, str]) -> bool:
        """Append the admin bot's program when this contentq has `contentq bot` (and render does not already)."""
        text = self.conf.read_text()
        if "[program:contentq-bot]" in text:
            return True
        probe = subprocess.run([sys.executable, "-m", "contentq", "bot", "--help"], capture_output=True,
                               env={**self.env, **extra}, timeout=60)  # fmt: skip
        if probe.returncode != 0:
            return False
        env = ",".join(f'{k}="{v}"' for k, v in {"CONTENTQ_HOME": str(self.home), **extra}.items())
        log = sv.logs_dir(self.settings) / "contentq-bot.log"
        program = [
            "[program:contentq-bot]", f"command={sys.executable} -m contentq bot", f"directory={self.home}",
            f"environment={env}", "autostart=true", "autorestart=true", f"stdout_logfile={log}",
            "redirect_stderr=true", "stopasgroup=true", "killasgroup=true",
        ]  # fmt: skip
        self.conf.write_text(text + "\n" + "\n".join(program) + "\n")
        return True

    def start(self) -> None:
        self.proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(self.conf)], env=self.env, cwd=self.tmp,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def ctl(self, *args: str) -> str:
        result = subprocess.run([str(SUPERVISORCTL), "-c", str(self.conf), *args], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        return result.stdout

    def programs(self) -> dict[int, str]:
        """pid → program name, from `supervisorctl status`."""
        out = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "RUNNING" and parts[2] == "pid":
                out[int(parts[3].rstrip(","))] = parts[0].split(":")[-1]
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("shutdown")
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"error: timed out waiting for {what}")


def text_of(rng: random.Random, serial: int) -> str:
    return f"Report {serial}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 40))) + "."


def report(title: str, procs: list[Proc]) -> dict[str, Any]:
    sup = [p for p in procs if p.name.startswith("supervisord")]
    own = [p for p in procs if not p.name.startswith("supervisord")]
    rss, pss = sum(p.rss for p in own), sum(p.pss for p in own)
    print(f"\n{title}")
    print(f"  {'process':<28} {'pid':>7} {'RSS MiB':>8} {'PSS MiB':>8}")
    for p in own + sup:
        print(f"  {p.name:<28} {p.pid:>7} {p.rss / MIB:>8.1f} {p.pss / MIB:>8.1f}")
    verdict = "met" if rss <= TARGET_MIB * MIB else "NOT met"
    print(f"  {'total (without supervisord)':<28} {len(own):>7} {rss / MIB:>8.1f} {pss / MIB:>8.1f}"
          f"   RSS ≤ {TARGET_MIB} MiB: {verdict}; PSS ≤ {TARGET_MIB} MiB: "
          f"{'met' if pss <= TARGET_MIB * MIB else 'NOT met'}")  # fmt: skip
    if sup:
        print(f"  (supervisord adds RSS {sup[0].rss / MIB:.1f} MiB, PSS {sup[0].pss / MIB:.1f} MiB)")
    return {"processes": [p.__dict__ for p in procs], "rss_mib": rss / MIB, "pss_mib": pss / MIB}


def run_jobs(dep: Deployment, rt: Runtime, total: int, sources: int, seed: int) -> dict[str, int]:
    """Rounds of donor messages (half of the donors live to the listener), a collect job per source each round,
    and maintenance jobs in between, until `total` jobs have run: each message becomes a post with its rewrite
    and publish jobs."""
    rng = random.Random(seed)
    rounds = 10
    per_source = max(1, (total * 3 // 10) // (rounds * sources))  # about 30 % of the jobs are posts' rewrites
    messages = per_source * rounds * sources
    collects = rounds * sources
    noops = max(0, total - collects - 2 * messages)
    first_job = int(rt.store.scalar("SELECT COUNT(*) FROM jobs") or 0)
    from contentq.web.auth import load_token

    token = load_token(dep.settings)
    serial = 0
    msg_ids = dict.fromkeys(range(sources), 0)
    for r in range(rounds):
        for n in range(sources):
            batch = []
            for _ in range(per_source):
                msg_ids[n] += 1
                serial += 1
                batch.append((msg_ids[n], text_of(rng, serial)))
            # Telegram delivers a channel's every message to a listener: half of the donors are live, the
            # other half reach contentq through collect jobs only (each round's collect finds the live ones stored).
            post_donor(dep.tg_db, f"@donor{n}", batch, live=n % 2 == 0)
        for n in range(sources):
            enqueue(rt, "collect", f"@donor{n}", {"source": f"@donor{n}"})
        for i in range(noops // rounds + (noops % rounds if r == rounds - 1 else 0)):
            enqueue(rt, "noop", f"footprint-{r}-{i}", {})
        if token:
            for path in ("/api/dashboard", "/api/jobs?limit=50", "/api/posts?limit=50", "/api/workers"):
                req = urllib.request.Request(f"http://127.0.0.1:{dep.port}{path}",
                                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
                try:
                    urllib.request.urlopen(req, timeout=30).read()
                except OSError as exc:
                    print(f"  (panel {path}: {exc})")
        time.sleep(1.0)

    def done() -> bool:
        open_jobs = rt.store.scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress')")
        published = len(visible(dep.tg_db))
        return not open_jobs and published >= messages

    deadline = time.monotonic() + 600
    while not done():
        if time.monotonic() > deadline:
            print(f"  warning: {len(visible(dep.tg_db))} of {messages} posts published after 10 minutes; measuring")
            break
        time.sleep(1.0)
    rows = rt.store.query(
        "SELECT kind, status, COUNT(*) AS n FROM jobs WHERE rowid > ? GROUP BY kind, status ORDER BY kind",
        (first_job,),
    )
    counts: dict[str, int] = {}
    for row in rows:
        counts[f"{row['kind']}:{row['status']}"] = int(row["n"])
    counts["published"] = len(visible(dep.tg_db))
    counts["messages"] = messages
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="mixed jobs to run (default 1000)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement (default 60)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after start before measuring")
    parser.add_argument("--sources", type=int, default=10, help="donor → target routes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="cq-footprint-"))
    figures: dict[str, Any] = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        with LLMockServer() as llm:
            LLMock(llm).reply(ANSWER, times=None)
            dep = Deployment(tmp, args.sources, llm.base_url("openai"))
            groups = sv.worker_groups(dep.settings)
            workers = sum(g.numprocs for g in groups)
            print(f"{time.strftime('%H:%M:%S')} deployment: embedded Valkey; workers "
                  + ", ".join(f"{g.program} ×{g.numprocs} ({' '.join(g.queues)})" for g in groups)
                  + "; contentq-listen; contentq-web"
                  + ("; contentq-bot" if dep.bot else ""))  # fmt: skip
            if not dep.bot:
                print("note: this contentq has no `contentq bot` command: the deployment runs without the bot")
            dep.start()
            try:
                server = embedded_server(dep.settings)
                wait_for(server.ping, 120, "the supervised Valkey")
                rt = Runtime(load_settings(home=dep.home, redis_url=server.url))
                from rq import Worker

                wait_for(lambda: len(Worker.all(connection=rt.redis)) == workers, 120, f"{workers} workers")
                wait_for(lambda: rt.store.scalar("SELECT state FROM listeners") == "connected", 120,
                         "the listener connected")  # fmt: skip
                wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{dep.port}/login", timeout=5), 120,
                         "the panel")  # fmt: skip
                time.sleep(args.settle)
                root = dep.proc.pid if dep.proc else 0
                figures["after_start"] = report(f"{time.strftime('%H:%M:%S')} after start (+{args.settle:g} s)",
                                                snapshot(root, dep.programs()))  # fmt: skip
                t0 = time.monotonic()
                counts = run_jobs(dep, rt, args.jobs, args.sources, args.seed)
                jobs = sum(v for k, v in counts.items() if ":" in k)
                print(f"\n{time.strftime('%H:%M:%S')} {jobs} jobs ended in {time.monotonic() - t0:.0f} s: "
                      + ", ".join(f"{k} {v}" for k, v in counts.items()))  # fmt: skip
                figures["jobs"] = counts
                memory = rt.redis.info("memory")
                figures["valkey"] = {"keys": rt.redis.dbsize(), "used_memory": memory["used_memory"],
                                     "used_memory_peak": memory["used_memory_peak"]}  # fmt: skip
                print(f"  Valkey: {rt.redis.dbsize()} keys, used_memory {memory['used_memory'] / MIB:.1f} MiB "
                      f"(peak {memory['used_memory_peak'] / MIB:.1f} MiB)")  # fmt: skip
                figures["after_jobs"] = report(f"{time.strftime('%H:%M:%S')} after {jobs} jobs",
                                               snapshot(root, dep.programs()))  # fmt: skip
                rt.close()
                figures["idle"] = idle_cpu(root, dep.programs(), args.idle)
            finally:
                dep.stop()
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def idle_cpu(root: int, programs: dict[int, str], seconds: float) -> dict[str, Any]:
    """CPU time every process of the set used over `seconds` with nothing to do, per process and in total."""
    tick = os.sysconf("SC_CLK_TCK")
    before = {p.pid: p for p in snapshot(root, programs)}
    time.sleep(seconds)
    after = {p.pid: p for p in snapshot(root, programs)}
    print(f"\n{time.strftime('%H:%M:%S')} idle CPU over {seconds:g} s (utime+stime, % of one core)")
    total = own = 0.0
    rows = {}
    for pid, p in sorted(after.items(), key=lambda kv: kv[1].name):
        used = (p.cpu_ticks - before[pid].cpu_ticks) / tick if pid in before else p.cpu_ticks / tick
        share = used / seconds
        rows[f"{p.name}:{pid}"] = share
        total += share
        if not p.name.startswith("supervisord"):
            own += share
        print(f"  {p.name:<28} {pid:>7} {used:>7.2f} s {share:>8.2%}")
    verdict = "met" if own <= TARGET_IDLE_CPU else "NOT met"
    print(f"  {'total (without supervisord)':<28} {'':>7} {own * seconds:>7.2f} s {own:>8.2%}"
          f"   ≤ {TARGET_IDLE_CPU:.0%} of one core: {verdict}")  # fmt: skip
    return {"per_process": rows, "share_of_core": own, "with_supervisord": total}


if __name__ == "__main__":
    main()
