"""A Typer group that imports a command's module only when that command is used.

Every CLI module imports cores (the store and sqlite-utils, redis, the routes' pydantic models, Telethon …), so
importing them all made `contentq --help` cost half a second. The group knows each command's name and one-line
help without importing anything; the command itself is built (by Typer, as before) when it runs or shows its own
--help. tests/test_cli_startup.py checks that the one-line helps here match the commands' own.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import ClassVar

import typer
import typer.main
from typer import _click  # typer vendors its own click: its classes, whatever click is installed besides
from typer.core import TyperCommand, TyperGroup

from contentq.cli import typer_app


@dataclass(frozen=True)
class LazyCommand:
    module: str
    """The module under contentq.cli that defines it, e.g. "collect"."""
    attribute: str
    """A command function or a `typer.Typer` sub-app in that module."""
    help: str
    """The one line `contentq --help` shows (the first paragraph of the command's own help)."""


class LazyGroup(TyperGroup):
    """Subclasses set `lazy_commands`, in the order `--help` lists them (commands registered on the app follow)."""

    lazy_commands: ClassVar[dict[str, LazyCommand]] = {}
    _listing = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        lazy = list(self.lazy_commands)
        return [*lazy, *(name for name in super().list_commands(ctx) if name not in self.lazy_commands)]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        spec = self.lazy_commands[cmd_name]
        if self._listing:  # the group's own --help lists names and one-liners: nothing to import
            return TyperCommand(cmd_name, help=spec.help, short_help=spec.help)  # whole, not cut at 45 characters
        command = _build(cmd_name, spec)
        self.add_command(command, cmd_name)
        return command

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _build(name: str, spec: LazyCommand) -> _click.Command:
    """The click command Typer makes of the function or sub-app, as if it were registered on the app."""
    target = getattr(importlib.import_module(f"contentq.cli.{spec.module}"), spec.attribute)
    holder = typer_app()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name=name)(target)
    command = typer.main.get_group(holder).commands[name]
    _list_whole(command)
    return command


def _list_whole(command: _click.Command) -> None:
    """A group's --help lists each sub-command with the first paragraph of its help, wrapped: plain click would cut
    it at the first sentence or ~60 columns with "..."."""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            if not sub.short_help and sub.help:
                sub.short_help = " ".join(inspect.cleandoc(sub.help).split("\n\n")[0].split())
            _list_whole(sub)


def reset_runtime() -> None:
    """Close this invocation's runtime, if a command built one: only the commands' modules import
    contentq.cli.common (and through it the store), so when none was imported there is nothing to close."""
    common = sys.modules.get("contentq.cli.common")
    if common is not None:
        common.reset_runtime()
