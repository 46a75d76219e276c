"""The import layers hold: cli → jobs → cores → lifecycle → runtime → integrations → foundations, the runtime
knows no core and no Telegram, and there is no import circle.

The contracts live in pyproject.toml ([tool.importlinter]); docs/development.md explains the layers. An
import inside a function is an edge like any other: grimp sees it. The contracts leave type-only imports
(under TYPE_CHECKING) out; the circle test here counts them too.
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
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") == 5


def test_an_import_against_the_layers_is_reported() -> None:
    # The contract is not vacuous: an integration importing a core is what the layers check finds.
    graph = grimp.build_graph("contentq")
    graph.add_import(importer="contentq.integrations.llm", imported="contentq.rewrite.core")
    illegal = graph.find_illegal_dependencies_for_layers(
        layers=["contentq.rewrite", "contentq.integrations"], containers=set()
    )
    assert {(d.importer, d.imported) for d in illegal} == {("contentq.integrations", "contentq.rewrite")}


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The module groups that import each other round (strongly connected components of two or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm; the module graph is a few hundred nodes deep at most
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def full_graph() -> grimp.ImportGraph:
    """Every import of contentq, those inside functions and under TYPE_CHECKING included."""
    return grimp.build_graph("contentq", exclude_type_checking_imports=False, cache_dir=None)


def test_no_import_circle_even_counting_type_only_imports() -> None:
    graph = full_graph()
    assert _circles(graph) == []
    # The check is not vacuous: the circle the runtime used to close through the notifier is found.
    graph.add_import(importer="contentq.runtime.context", imported="contentq.notify")
    assert ["contentq.notify", "contentq.runtime.context"] in _circles(graph)


def test_the_runtime_knows_neither_the_notifier_nor_telegram_even_for_types() -> None:
    graph = full_graph()
    for forbidden in (
        "contentq.notify",
        "contentq.integrations.telegram",
        "contentq.lifecycle",
        "contentq.flow.pipeline",
    ):
        for module in graph.find_children(forbidden) | {forbidden}:
            chain = graph.find_shortest_chains(importer="contentq.runtime", imported=module, as_packages=True)
            assert not chain, (module, chain)


def test_no_circle_between_top_level_packages_even_counting_type_only_imports() -> None:
    # The folder tree reads like the pipeline only if its packages stack: collapse each module to its top-level
    # package (contentq.intake.collect → contentq.intake) and look for circles among those.
    graph = full_graph()
    packages = grimp.ImportGraph()

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    for module in graph.modules:
        packages.add_module(top(module))
        for imported in graph.find_modules_directly_imported_by(module):
            if top(imported) != top(module):
                packages.add_import(importer=top(module), imported=top(imported))
    assert _circles(packages) == []
    # Not vacuous: a type-only import of intake from flow (what channels.py once had) is a circle.
    packages.add_import(importer="contentq.flow", imported="contentq.intake")
    assert any({"contentq.flow", "contentq.intake"} <= set(circle) for circle in _circles(packages))
