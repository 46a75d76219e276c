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
import sqlite3
import subprocess
import sys
import textwrap
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


@pytest.mark.timeout(300)
def test_readme_steps_1_to_4_publish_every_sample_post_to_the_outbox(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / "contentq").symlink_to(REPO / "contentq")
    bindir = Path(sys.executable).parent
    (clone / ".venv" / "bin" / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    home = tmp_path / "user"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTQ_") and k != "VIRTUAL_ENV"}
    env.update(HOME=str(home), PATH=f"/usr/bin:/bin:{env.get('PATH', '')}", PYTHONPATH=str(REPO), COLUMNS="80")
    script = "set -euo pipefail\n" + "\n".join(step_blocks())
    contentq_home = home / "contentq-home"
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
