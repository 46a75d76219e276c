"""Shared CLI plumbing: the runtime of this invocation and option types."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from contentq import notify
from contentq.runtime.context import Runtime
from contentq.settings import get_settings
from contentq.store.db import SQLITE_INT_MAX

notify.install()  # every command that builds a runtime imports this module: its runtime gets the admin notifier

__all__ = ["SQLITE_INT_MAX"]  # re-exported: every CLI module bounds ids with it

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WideOpt = Annotated[
    bool,
    typer.Option("--wide", help="Every column, each cell whole, however long the lines (default: fit the terminal)."),
]

LIMIT_MAX = 1_000_000
"""The largest --limit a listing accepts (SQLite takes at most SQLITE_INT_MAX; nobody reads more)."""

PostIdArg = Annotated[int, typer.Argument(help="Post id.", min=1, max=SQLITE_INT_MAX)]
ImageIdArg = Annotated[int, typer.Argument(help="Image id.", min=1, max=SQLITE_INT_MAX)]

_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The runtime for this CLI invocation, built from settings after global flags were applied."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def reset_runtime() -> None:
    global _runtime
    if _runtime is not None:
        _runtime.close()
    _runtime = None


def finite(value: float) -> float:
    """An option callback: click's FloatRange lets `nan` through (every comparison with it is false)."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds")
    return value
