"""Importing sqlite-utils without numpy, for the one process that applies the migrations.

sqlite-utils imports numpy when it is installed (contentq needs it for dedup) only to map numpy scalar types to
column types when rows are inserted; contentq inserts none through sqlite-utils, which it uses for its migrations
alone. A long-running program that happens to apply them (the first to open a new or upgraded database) would
otherwise keep numpy, about 15 MiB, for its lifetime, though it may never deduplicate anything.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType


class _NumpyHidden(importlib.abc.MetaPathFinder):
    """`import numpy` fails in the thread that installed it (sqlite-utils catches the ImportError); other
    threads import numpy as usual meanwhile."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "numpy" and threading.get_ident() == self.thread:
            raise ModuleNotFoundError("numpy is not imported for sqlite-utils", name=fullname)
        return None


def load_sqlite_utils() -> ModuleType:
    """sqlite-utils, imported without numpy unless this process has numpy already (then as it always was)."""
    if "sqlite_utils" in sys.modules or "numpy" in sys.modules:
        import sqlite_utils

        return sqlite_utils
    hidden = _NumpyHidden()
    sys.meta_path.insert(0, hidden)
    try:
        import sqlite_utils
    finally:
        sys.meta_path.remove(hidden)
    return sqlite_utils
