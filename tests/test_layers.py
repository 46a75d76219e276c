"""The import layers hold: cli → jobs → cores → runtime → integrations → foundations, and no import circles.

The contracts live in pyproject.toml ([tool.importlinter]); docs/development.md explains the layers. An
import inside a function is an edge like any other: grimp sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept() -> None:
    # import-linter's own command, on this checkout (PYTHONPATH), reading pyproject.toml's contracts.
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") == 3


def test_an_import_against_the_layers_is_reported() -> None:
    # The contract is not vacuous: an integration importing a core is what the layers check finds.
    graph = grimp.build_graph("contentq")
    graph.add_import(importer="contentq.integrations.llm", imported="contentq.rewrite.core")
    illegal = graph.find_illegal_dependencies_for_layers(
        layers=["contentq.rewrite", "contentq.integrations"], containers=set()
    )
    assert {(d.importer, d.imported) for d in illegal} == {("contentq.integrations", "contentq.rewrite")}
