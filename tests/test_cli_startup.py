"""`contentq --help` starts without the heavy libraries; its listing still matches the commands' own help."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import typer.main

from contentq.cli.app import ContentqGroup, app

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "sqlite_utils",
    "numpy",
    "telethon",
    "openai",
    "redis",
    "contentq.routes",
    "contentq.store",
    "pydantic_settings",
    "rich",
)


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1].split()[1:]  # the last line: after what the code printed


def test_importing_the_cli_loads_no_heavy_library():
    assert loaded_after("import contentq.cli.app") == []


def test_the_top_level_help_lists_every_command_without_loading_one():
    code = (
        "import contentq.cli.app as a\n"
        "sys.argv = ['contentq', '--help']\n"
        "try:\n    a.main()\nexcept SystemExit as e:\n    assert not e.code, e.code"
    )
    assert loaded_after(code) == []
    done = subprocess.run(
        [sys.executable, "-m", "contentq", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ContentqGroup.lazy_commands:
        assert f"\n  {name} " in done.stdout


def test_a_group_lists_each_command_with_its_first_paragraph_whole():
    """Plain click help cuts a listed command at its first sentence or ~60 columns ("..."); contentq's does not."""
    done = subprocess.run(
        [sys.executable, "-m", "contentq", "queue", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stdout.splitlines()[1:] if line.endswith("...")]
    assert "age of the oldest queued job." in " ".join(done.stdout.split())


def test_a_command_loads_its_module_when_it_runs():
    code = (
        "from typer.testing import CliRunner\nimport contentq.cli.app as a\nCliRunner().invoke(a.app, ['db', '--help'])"
    )
    assert "contentq.store" in loaded_after(code)


def test_the_listed_one_line_helps_are_the_commands_own():
    """The registry repeats each command's first help paragraph; a docstring edited alone shows up here."""
    group = typer.main.get_command(app)
    assert isinstance(group, ContentqGroup)
    ctx = typer.Context(group)
    for name, spec in ContentqGroup.lazy_commands.items():
        command = group.get_command(ctx, name)
        assert command is not None and command.name == name
        own = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
        assert spec.help == own, name
