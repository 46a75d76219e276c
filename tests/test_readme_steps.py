"""README "Your first real route, step by step", steps 1-4, run with bash exactly as written.

The blocks run in a temporary folder laid out like the clone: `contentq/` (a link to the package, so
`contentq/data/demo/result.json` is there) and `.venv/bin/activate`, a stand-in for the environment `./dev`
makes, which puts this interpreter's bin (where the `contentq` command is) on PATH. HOME is a temporary folder,
so `~/contentq-home` lands there; the embedded Valkey is the README's, not the test session's.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def step_blocks(first: int = 1, last: int = 4) -> list[str]:
    """The ```bash blocks of the numbered steps first..last of "Your first real route", dedented."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Your first real route", 1)[1].split("\n## ", 1)[0]
    steps = re.split(r"\n(?=\d+\. \*\*)", section)
    blocks = []
    for step in steps:
        number = re.match(r"(\d+)\. ", step)
        if number and first <= int(number.group(1)) <= last:
            blocks += [textwrap.dedent(b) for b in re.findall(r"```bash\n(.*?)\n\s*```", step, re.S)]
    return blocks


def test_the_steps_are_found() -> None:
    blocks = step_blocks()
    assert len(blocks) == 4
    assert blocks[0].startswith(". .venv/bin/activate") and "contentq worker --burst" in blocks[3]


def readme_clone(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """The clone's layout, the environment of a new user's shell, and where ~/contentq-home lands."""
    clone = tmp_path / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / "contentq").symlink_to(REPO / "contentq")
    bindir = Path(sys.executable).parent
    (clone / ".venv" / "bin" / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    home = tmp_path / "user"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_") and k != "VIRTUAL_ENV"}
    env.update(HOME=str(home), PATH=f"/usr/bin:/bin:{env.get('PATH', '')}", PYTHONPATH=str(REPO), COLUMNS="80")
    return clone, env, home / "contentq-home"


@pytest.mark.timeout(300)
def test_readme_steps_1_to_4_publish_every_sample_post_to_the_outbox(tmp_path: Path) -> None:
    clone, env, contentq_home = readme_clone(tmp_path)
    script = "set -euo pipefail\n" + "\n".join(step_blocks())
    stop = f'. .venv/bin/activate && CONTENTQ_HOME="{contentq_home}" contentq redis stop'
    try:
        result = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        stopped = subprocess.run(["bash", "-c", stop], cwd=clone, env=env, capture_output=True, text=True, timeout=60)
        assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        status = subprocess.run(
            ["bash", "-c", ". .venv/bin/activate && contentq --home ~/contentq-home redis status --json"],
            cwd=clone, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["running"] is False  # the README's last sentence holds
    finally:
        subprocess.run(["bash", "-c", stop], cwd=clone, env=env, capture_output=True, timeout=60)

    # Step 2's doctor passed (set -e), step 3 said where the Valkey runs and how to stop it.
    assert "contentq redis stop" in result.stderr
    # Step 4: every post of the sample export is published, one outbox folder each, listed by `ls`.
    conn = sqlite3.connect(contentq_home / "contentq.db")
    posts = conn.execute("SELECT id, state FROM posts WHERE route = 'tech'").fetchall()
    conn.close()
    assert len(posts) == 9 and {state for _, state in posts} == {"published"}
    folders = sorted(p.name for p in (contentq_home / "outbox" / "tech").iterdir())
    assert folders == sorted(str(post_id) for post_id, _ in posts)
    assert all((contentq_home / "outbox" / "tech" / name / "post.html").is_file() for name in folders)
    assert result.stdout.split()[-9:] == [str(i) for i in range(1, 10)]  # `ls` printed them
    assert "waiting for" in result.stderr and "(--horizon)" in result.stderr  # the worker said what it waits for


LISTEN_WATCH_SECONDS = 30
"""How long supervisord runs the listener after README steps 1-4 (no Telegram login): it must not restart."""


@pytest.mark.timeout(300)
def test_after_steps_1_to_4_supervisor_runs_the_listener_without_a_restart(tmp_path: Path) -> None:
    clone, env, contentq_home = readme_clone(tmp_path)
    with socket.socket() as probe:  # the panel on a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "supervisord.conf"
    render = f"contentq supervisor render --standalone -o {conf} --env PYTHONPATH={REPO} --env CONTENTQ_WEB_PORT={port}"
    script = "set -euo pipefail\n" + "\n".join(step_blocks()) + "\n" + render
    ctl = [str(Path(sys.executable).with_name("supervisorctl")), "-c", str(conf)]
    supervisord = None
    try:
        steps = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=240)
        assert steps.returncode == 0, steps.stdout + steps.stderr
        # The route reads @techdigest_demo: the telegram worker hosts the listener (the compact layout).
        assert "worker publish collect --host listen" in conf.read_text()
        daemon = [str(Path(sys.executable).with_name("supervisord")), "-n", "-c", str(conf)]
        quiet = subprocess.DEVNULL
        supervisord = subprocess.Popen(daemon, env=env, cwd=tmp_path, stdout=quiet, stderr=quiet)

        def listener_pid() -> str:
            out = subprocess.run([*ctl, "pid", "contentq:contentq-telegram-0"], capture_output=True, text=True).stdout
            return out.strip() if out.strip().isdigit() and out.strip() != "0" else ""

        deadline = time.monotonic() + 60
        while not listener_pid() and time.monotonic() < deadline:
            time.sleep(0.5)
        first = listener_pid()
        assert first, "the listener never started"
        time.sleep(LISTEN_WATCH_SECONDS)
        assert listener_pid() == first
        log = (contentq_home / "logs" / "supervisord.log").read_text()
        assert log.count("spawned: 'contentq-telegram-0'") == 1 and "exited: contentq-telegram-0" not in log, log

        # health names the reason and the fix, as a warning; it passes once the workers are up
        health = ". .venv/bin/activate && export CONTENTQ_HOME=~/contentq-home && contentq health"
        for _ in range(60):
            checked = subprocess.run(["bash", "-c", health], cwd=clone, env=env, capture_output=True, text=True)
            if checked.returncode == 0:
                break
            time.sleep(1)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "warn listener listen: not logged in: CONTENTQ_TG_API_ID" in checked.stdout
        assert "contentq login" in checked.stdout
    finally:
        if supervisord is not None:
            subprocess.run([*ctl, "shutdown"], capture_output=True, timeout=120)
            supervisord.wait(timeout=120)
        stop = f'. .venv/bin/activate && CONTENTQ_HOME="{contentq_home}" contentq redis stop'
        subprocess.run(["bash", "-c", stop], cwd=clone, env=env, capture_output=True, timeout=60)
