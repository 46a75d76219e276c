"""Footprint: the memory and idle CPU of a standard deployment, on the embedded defaults, under supervisord.

    python bench/footprint.py [--layout compact|spread ...] [--jobs 1000] [--idle 60] [--json FILE|-] [--keep]

What runs is what `contentq supervisor render --standalone` gives for the default settings and the layout
(CONTENTQ_PROCESS_LAYOUT; each --layout given is run in turn, from a fresh home), started by the real supervisord
of this virtual environment: whatever programs the render holds, with their `numprocs` (the embedded Valkey, the
workers, the listener, the admin bot, the web panel, in whichever processes the layout puts them). The programs
are read back from the rendered file, so the bench measures what render gives. The outside world is faked:
Telegram is tests/shared_telegram.py (its channels in a SQLite file every process shares: donor messages for
collect and the listener, sends for publish), the admin bot's Telegram is tests/shared_bot.py (its chats in a
SQLite file: the bench reads the cards and writes the admin's presses and commands), the LLM is llmock on
loopback answering at once.

It prints, against the targets of issue 27 (≤ 300 MiB in total after 1,000 jobs; idle ≤ 1 % of one core):
- the deployment: the programs as rendered, and which process hosts the bot and the listener;
- after start (every program up, workers registered, the listener connected, the bot logged in, the panel
  answering): RSS and PSS per process, total;
- after --jobs mixed jobs (collect, rewrite through the LLM, publish, maintenance; the listener takes the
  messages of half of the donors live; one route needs approval, so the bot sends cards and the bench presses
  Approve on each and sends a few commands; the panel's API read meanwhile): the same;
- idle CPU over --idle seconds once the work is done: utime+stime of every process of the set (Valkey
  included) from /proc, as a share of one core; supervisord's own apart.

A rendered program that is not running, or whose process changed (supervisord restarted it), at any
measurement ends the run with an error and the end of its log: a crash-looping program is not measured.
RSS counts a page shared by several processes (the interpreter's code, libraries) in each of them; PSS divides
it between them (/proc/PID/smaps_rollup), so the PSS total is what the set really costs the machine.
supervisord itself is shown apart (systemd could run the same programs).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
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
from dataclasses import dataclass, field
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
from tests import shared_bot  # noqa: E402
from tests.shared_telegram import post_donor, visible  # noqa: E402

MIB = 1024 * 1024
TARGET_MIB = 300
TARGET_IDLE_CPU = 0.01
BIN = Path(sys.executable).parent
SUPERVISORD = BIN / "supervisord"
SUPERVISORCTL = BIN / "supervisorctl"
LAYOUTS = ("compact", "spread")
ADMIN = 111
"""The Telegram user id of the bot's one admin (its private chat gets the cards)."""
MODULES_PROBE = """import atexit, os, sys

def _dump() -> None:  # the top-level packages this process imported, for bench/footprint.py --modules
    names = sorted({m.split(".")[0] for m in list(sys.modules)} - set(sys.stdlib_module_names))
    path = os.path.join(os.environ["CONTENTQ_BENCH_MODULES"], f"{os.getpid()}.txt")
    with open(path, "w") as f:
        f.write("\\n".join(names))

atexit.register(_dump)
"""
"""A sitecustomize for --modules: each Python process of the set writes what it imported when it exits."""
BASE_PACKAGES = frozenset(str.split(
    "contentq redis rq pydantic pydantic_core pydantic_settings typing_extensions typing_inspection annotated_types "
    "dotenv typer click rich shellingham markdown_it mdurl pygments sitecustomize"
))  # fmt: skip
"""What every contentq process imports (the CLI, settings, the queues): left out of the --modules lists."""
APPROVAL_ROUTES = 1
"""The first routes need approval: their posts reach the bot as cards, and the bench approves them."""

ROUTE = """
[routes.r{n}]
target = "@target{n}"
sources = ["@donor{n}"]
rewriter = "llm"
prompt = "Rewrite for the channel's readers."
images = "none"
approval = {approval}
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


@dataclass
class Program:
    """A `[program:…]` of the rendered config: its processes as supervisorctl names them, and their logs."""

    name: str
    command: str
    processes: dict[str, str]
    """process name → its log file"""

    @property
    def worker(self) -> bool:
        return " -m contentq worker " in self.command


def rendered_programs(conf: Path) -> list[Program]:
    parser = configparser.RawConfigParser(strict=False)
    parser.read(conf)
    programs = []
    for section in parser.sections():
        if not section.startswith("program:"):
            continue
        name = section.split(":", 1)[1]
        pattern = parser.get(section, "process_name", fallback="%(program_name)s")
        log = parser.get(section, "stdout_logfile", fallback="")
        processes = {}
        for num in range(parser.getint(section, "numprocs", fallback=1)):
            names = {"program_name": name, "process_num": num}
            processes[pattern % names] = log % names
        programs.append(Program(name, parser.get(section, "command").replace("%%", "%"), processes))
    return programs


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


def owner(pid: int, programs: dict[int, str]) -> str:
    """The supervised process `pid` is, or runs under (a work horse, a thread's process)."""
    seen = 0
    while pid > 1 and seen < 64:
        if pid in programs:
            return programs[pid]
        try:
            pid, _ = _read_stat(pid)
        except (OSError, ValueError, IndexError):
            break
        seen += 1
    return "?"


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
    def __init__(self, tmp: Path, sources: int, llm_url: str, layout: str, modules: bool = False) -> None:
        self.tmp = tmp
        self.layout = layout
        self.home = tmp / "home"
        self.home.mkdir()
        routes = (ROUTE.format(n=n, approval=str(n < APPROVAL_ROUTES).lower()) for n in range(sources))
        (self.home / "contentq.toml").write_text("".join(routes))
        # The bot's token and admins where an operator keeps them: render sees the token and runs the bot.
        (self.home / ".env").write_text(f"CONTENTQ_BOT_TOKEN=123456:footprint-bench\nCONTENTQ_BOT_ADMINS={ADMIN}\n")
        self.tg_db = tmp / "telegram.db"
        self.bot_db = tmp / "bot.db"
        shared_bot.connect(self.bot_db).close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_")}
        self.env.update(
            CONTENTQ_HOME=str(self.home),
            CONTENTQ_PROCESS_LAYOUT=layout,
            CONTENTQ_TG_GATEWAY="tests.shared_telegram:gateway_from_env",
            CONTENTQ_FAKE_TG_DB=str(self.tg_db),
            CONTENTQ_BOT_GATEWAY="tests.shared_bot:gateway_from_env",
            CONTENTQ_FAKE_BOT_DB=str(self.bot_db),
            CONTENTQ_OPENAI_BASE_URL=llm_url,
            CONTENTQ_OPENAI_API_KEY="sk-footprint-bench",
            CONTENTQ_PUBLISH_MIN_INTERVAL="0",
            CONTENTQ_PUBLISH_ACCOUNT_BUDGET="0",  # no pacing of the sends: the run takes minutes, not a quarter hour
        )
        # The default settings but the layout: no Redis URL (embedded Valkey), default concurrency and intervals.
        self.settings = load_settings(home=self.home, process_layout=layout)
        extra = {"PYTHONPATH": str(REPO), "CONTENTQ_WEB_PORT": str(self.port)}
        self.modules = tmp / "modules" if modules else None
        if self.modules is not None:
            (tmp / "probe").mkdir()
            (tmp / "probe" / "sitecustomize.py").write_text(MODULES_PROBE)
            self.modules.mkdir()
            extra.update(PYTHONPATH=f"{tmp / 'probe'}{os.pathsep}{REPO}", CONTENTQ_BENCH_MODULES=str(self.modules))
        self.conf = sv.write(self.settings, tmp / "supervisord.conf", standalone=True, extra_env=extra)
        self.programs = rendered_programs(self.conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(self.conf)], env=self.env, cwd=self.tmp,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def ctl(self, *args: str) -> str:
        result = subprocess.run([str(SUPERVISORCTL), "-c", str(self.conf), *args], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        return result.stdout

    def status(self) -> dict[str, tuple[str, int]]:
        """process name → (state, pid), from `supervisorctl status`."""
        out = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) >= 4 and parts[2] == "pid" else 0
                out[parts[0].split(":")[-1]] = (parts[1], pid)
        return out

    def pids(self) -> dict[int, str]:
        """pid → process name of the running programs."""
        return {pid: name for name, (state, pid) in self.status().items() if state == "RUNNING" and pid}

    def log_of(self, process: str) -> str:
        for program in self.programs:
            if process in program.processes:
                return program.processes[process]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("shutdown")
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class NotUp(SystemExit):
    pass


def check_up(dep: Deployment, expected: dict[str, int] | None, when: str) -> dict[str, int]:
    """Every rendered process RUNNING (and, given `expected`, still the same process): process name → pid.
    Anything else ends the run loudly, with the end of the process's log."""
    status = dep.status()
    problems = []
    current = {}
    for program in dep.programs:
        for process in program.processes:
            state, pid = status.get(process, ("MISSING", 0))
            current[process] = pid
            if state != "RUNNING":
                problems.append(f"{process} is {state}")
            elif expected is not None and expected.get(process) != pid:
                problems.append(f"{process} was restarted (pid {expected.get(process)} → {pid})")
    if problems:
        tails = []
        for line in problems:
            log = Path(dep.log_of(line.split()[0]))
            if log.is_file():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                tails.append(f"--- end of {log}:\n" + "\n".join(tail))
        raise NotUp(f"error ({when}): " + "; ".join(problems) + "\n" + "\n".join(tails))
    return current


def wait_for(check: Any, timeout: float, what: str, dep: Deployment | None = None) -> Any:
    deadline = time.monotonic() + timeout
    looked = time.monotonic()
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        if dep is not None and time.monotonic() - looked > 5:  # a program in BACKOFF or FATAL: no use waiting
            looked = time.monotonic()
            if any(state in ("BACKOFF", "FATAL", "EXITED") for state, _ in dep.status().values()):
                check_up(dep, None, f"waiting for {what}")
        time.sleep(0.5)
    if dep is not None:
        check_up(dep, None, f"waiting for {what}")  # a program that is down says why
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


@dataclass
class Admin:
    """The bot's admin, through the shared bot fake: approves every card it gets, sends a command a round."""

    db: Path
    pressed: dict[int, int] = field(default_factory=dict)
    """card (control message id) → query id of its Approve press"""
    commands: list[int] = field(default_factory=list)

    def round(self, command: str | None = None) -> None:
        for message in shared_bot.messages(self.db, ADMIN):
            if message.id not in self.pressed and any("Approve" in b for b in message.labels()):
                self.pressed[message.id] = shared_bot.press(self.db, ADMIN, ADMIN, message.id, "Approve")
        if command:
            self.commands.append(shared_bot.say(self.db, ADMIN, ADMIN, command))

    def figures(self) -> dict[str, int]:
        chat = shared_bot.messages(self.db, ADMIN)
        answered = sum(1 for q in self.pressed.values() if shared_bot.answer_to(self.db, q) is not None)
        replies = {m.reply_to for m in chat if m.from_bot and m.reply_to}
        return {"bot messages": sum(1 for m in chat if m.from_bot), "cards approved": len(self.pressed),
                "presses answered": answered, "commands": len(self.commands),
                "commands answered": sum(1 for c in self.commands if c in replies),
                "updates left": shared_bot.pending(self.db), "bot logins": len(shared_bot.logins(self.db))}  # fmt: skip


def panel_reads(dep: Deployment, token: str | None) -> None:
    if not token:
        return
    for path in ("/api/dashboard", "/api/jobs?limit=50", "/api/posts?limit=50", "/api/workers"):
        req = urllib.request.Request(f"http://127.0.0.1:{dep.port}{path}", headers={"Authorization": f"Bearer {token}"})
        try:
            urllib.request.urlopen(req, timeout=30).read()
        except OSError as exc:
            print(f"  (panel {path}: {exc})")


def run_jobs(dep: Deployment, rt: Runtime, admin: Admin, total: int, sources: int, seed: int) -> dict[str, int]:
    """Rounds of donor messages (half of the donors live to the listener), a collect job per source each round,
    and maintenance jobs in between, until `total` jobs have run: each message becomes a post with its rewrite
    and publish jobs; the posts of the approval routes wait for the admin's press on their card."""
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
        panel_reads(dep, token)
        admin.round(("/status", "/pending", "/failed")[r % 3] if r % 2 == 0 else None)
        time.sleep(1.0)

    def done() -> bool:
        admin.round()
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


def describe(dep: Deployment) -> str:
    parts = []
    for program in dep.programs:
        what = program.command.split(" -m contentq ", 1)[-1]
        count = len(program.processes)
        parts.append(f"{program.name}{f' ×{count}' if count > 1 or program.worker else ''} ({what})")
    return "; ".join(parts)


def measure(args: argparse.Namespace, layout: str, tmp: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"layout": layout}
    with LLMockServer() as llm:
        LLMock(llm).reply(ANSWER, times=None)
        dep = Deployment(tmp, args.sources, llm.base_url("openai"), layout, modules=args.modules)
        figures["programs"] = {p.name: {"command": p.command, "processes": list(p.processes)} for p in dep.programs}
        print(f"{time.strftime('%H:%M:%S')} layout {layout}: {describe(dep)}")
        if not any(" -m contentq bot" in p.command for p in dep.programs):
            print("  (no program runs `contentq bot`: the bot must be hosted by another program's process)")
        dep.start()
        try:
            server = embedded_server(dep.settings)
            wait_for(server.ping, 120, "the supervised Valkey", dep)
            rt = Runtime(load_settings(home=dep.home, redis_url=server.url))
            from rq import Worker

            def workers_registered() -> bool:
                registered = {w.pid for w in Worker.all(connection=rt.redis)}
                status = dep.status()
                wanted = [status.get(p, ("", 0))[1] for prog in dep.programs if prog.worker for p in prog.processes]
                return all(pid in registered for pid in wanted)

            wait_for(workers_registered, 120, "every worker process registered", dep)
            wait_for(lambda: rt.store.scalar("SELECT state FROM listeners") == "connected", 120,
                     "the listener connected", dep)  # fmt: skip
            wait_for(lambda: shared_bot.logins(dep.bot_db), 120, "the bot logged in", dep)
            wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{dep.port}/login", timeout=5), 120,
                     "the panel", dep)  # fmt: skip
            time.sleep(args.settle)
            up = check_up(dep, None, "after start")
            pids = dep.pids()
            hosts = {
                "bot": [owner(pid, pids) for pid in shared_bot.logins(dep.bot_db)],
                "listener": [owner(int(r["pid"]), pids) for r in rt.store.query("SELECT pid FROM listeners")],
            }
            figures["hosts"] = hosts
            print(f"  the bot runs in {', '.join(hosts['bot'])}; the listener in {', '.join(hosts['listener'])}")
            root = dep.proc.pid if dep.proc else 0
            figures["after_start"] = report(f"{time.strftime('%H:%M:%S')} {layout}: after start (+{args.settle:g} s)",
                                            snapshot(root, pids))  # fmt: skip
            admin = Admin(dep.bot_db)
            t0 = time.monotonic()
            counts = run_jobs(dep, rt, admin, args.jobs, args.sources, args.seed)
            jobs = sum(v for k, v in counts.items() if ":" in k)
            print(f"\n{time.strftime('%H:%M:%S')} {jobs} jobs ended in {time.monotonic() - t0:.0f} s: "
                  + ", ".join(f"{k} {v}" for k, v in counts.items()))  # fmt: skip
            figures["jobs"] = counts
            figures["bot"] = admin.figures()
            print("  bot: " + ", ".join(f"{k} {v}" for k, v in figures["bot"].items()))
            if figures["bot"]["cards approved"] == 0:
                raise SystemExit("error: the bot sent no approval card: it does not work under this deployment")
            memory = rt.redis.info("memory")
            figures["valkey"] = {"keys": rt.redis.dbsize(), "used_memory": memory["used_memory"],
                                 "used_memory_peak": memory["used_memory_peak"]}  # fmt: skip
            print(f"  Valkey: {rt.redis.dbsize()} keys, used_memory {memory['used_memory'] / MIB:.1f} MiB "
                  f"(peak {memory['used_memory_peak'] / MIB:.1f} MiB)")  # fmt: skip
            check_up(dep, up, "after the jobs")
            figures["after_jobs"] = report(f"{time.strftime('%H:%M:%S')} {layout}: after {jobs} jobs",
                                           snapshot(root, dep.pids()))  # fmt: skip
            rt.close()
            named = dep.pids()
            figures["idle"] = idle_cpu(root, named, args.idle)
            check_up(dep, up, "after the idle measurement")
            if len(shared_bot.logins(dep.bot_db)) != 1:
                raise NotUp(f"error: the bot logged in {len(shared_bot.logins(dep.bot_db))} times: it restarted")
        finally:
            dep.stop()
    if dep.modules is not None:
        figures["modules"] = imported(dep.modules, named)
    return figures


def imported(folder: Path, named: dict[int, str]) -> dict[str, list[str]]:
    """--modules: the packages (not the standard library's) each process had imported by its stop."""
    print(f"\npackages imported by each process, at its stop (beyond {len(BASE_PACKAGES)} of every process)")
    out = {}
    for path in sorted(folder.glob("*.txt")):
        name = named.get(int(path.stem), path.stem)
        packages = [p for p in path.read_text().split() if p not in BASE_PACKAGES]
        out[name] = packages
        print(f"  {name:<28} {' '.join(packages)}")
    return out


def summary(results: list[dict[str, Any]]) -> None:
    print(f"\n{'layout':<8} {'programs':>8} {'processes':>9} {'start RSS/PSS MiB':>18} {'jobs RSS/PSS MiB':>17}"
          f" {'idle CPU':>9} {'supervisord':>11}")  # fmt: skip
    for r in results:
        start, jobs, idle = r["after_start"], r["after_jobs"], r["idle"]
        own = [p for p in jobs["processes"] if not p["name"].startswith("supervisord")]
        print(f"{r['layout']:<8} {len(r['programs']):>8} {len(own):>9}"
              f" {start['rss_mib']:>8.0f} / {start['pss_mib']:<7.0f} {jobs['rss_mib']:>7.0f} / {jobs['pss_mib']:<7.0f}"
              f" {idle['share_of_core']:>9.2%} {idle['supervisord']:>11.2%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", nargs="+", choices=LAYOUTS, default=["compact"],
                        help="CONTENTQ_PROCESS_LAYOUT for render; several: each in turn (default compact)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1000, help="mixed jobs to run (default 1000)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement (default 60)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after start before measuring")
    parser.add_argument("--sources", type=int, default=10, help="donor → target routes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures as JSON to this file ('-': to stdout, the tables "
                                       "then go to stderr)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (logs)")
    parser.add_argument("--modules", action="store_true", help="list the packages each process imported (from its "
                                                             "exit, through a sitecustomize)")  # fmt: skip
    args = parser.parse_args()

    stdout = sys.stdout
    results = []
    with contextlib.redirect_stdout(sys.stderr if args.json == "-" else stdout):
        for layout in dict.fromkeys(args.layout):
            tmp = Path(tempfile.mkdtemp(prefix=f"cq-footprint-{layout}-"))
            try:
                results.append({"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                **measure(args, layout, tmp)})  # fmt: skip
            finally:
                if args.keep:
                    print(f"kept: {tmp}")
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
            print()
        summary(results)
    if args.json:
        text = json.dumps(results if len(results) > 1 else results[0], indent=2)
        if args.json == "-":
            stdout.write(text + "\n")
        else:
            Path(args.json).write_text(text)


def idle_cpu(root: int, programs: dict[int, str], seconds: float) -> dict[str, Any]:
    """CPU time every process of the set used over `seconds` with nothing to do, per process and in total."""
    tick = os.sysconf("SC_CLK_TCK")
    before = {p.pid: p for p in snapshot(root, programs)}
    time.sleep(seconds)
    after = {p.pid: p for p in snapshot(root, programs)}
    print(f"\n{time.strftime('%H:%M:%S')} idle CPU over {seconds:g} s (utime+stime, % of one core)")
    own = sup = 0.0
    rows = {}
    for pid, p in sorted(after.items(), key=lambda kv: kv[1].name):
        used = (p.cpu_ticks - before[pid].cpu_ticks) / tick if pid in before else p.cpu_ticks / tick
        share = used / seconds
        rows[f"{p.name}:{pid}"] = share
        if p.name.startswith("supervisord"):
            sup += share
        else:
            own += share
        print(f"  {p.name:<28} {pid:>7} {used:>7.2f} s {share:>8.2%}")
    verdict = "met" if own <= TARGET_IDLE_CPU else "NOT met"
    print(f"  {'total (without supervisord)':<28} {'':>7} {own * seconds:>7.2f} s {own:>8.2%}"
          f"   ≤ {TARGET_IDLE_CPU:.0%} of one core: {verdict}; supervisord apart: {sup:.2%}")  # fmt: skip
    return {"per_process": rows, "share_of_core": own, "supervisord": sup, "with_supervisord": own + sup}


if __name__ == "__main__":
    main()
