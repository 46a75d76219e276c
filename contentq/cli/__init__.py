"""The Typer CLI: thin commands over the core, rendered with rich."""

from __future__ import annotations

from typing import Any

import typer


def typer_app(**kwargs: Any) -> typer.Typer:
    """A contentq Typer app. Its help is click's plain text: Typer's rich panels cost ~80 ms of imports (rich,
    markdown-it) on each `--help`, and plain text pipes, greps and wraps cleanly."""
    return typer.Typer(rich_markup_mode=None, **kwargs)
