"""Writing a file at a path the user gave (`supervisor render -o`, `metrics dump`): atomically, and only over a
regular file.

A device, a FIFO or a folder at the path is refused: replacing /dev/stdout or a named pipe with a regular file,
or writing next to a folder, is never what was meant. The text goes to a uniquely named temporary file in the
same folder and is renamed over the target, so readers (supervisord, node_exporter) never see half a file; the
temporary file is removed on any failure.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from contentq.errors import ContentqError


def _refuse_unless_regular(path: Path) -> int | None:
    """The mode bits of an existing regular file at `path`, None when nothing is there; raises otherwise."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ContentqError(f"{path}: {exc.strerror or exc}; give another path") from None
    if stat.S_ISDIR(info.st_mode):
        raise ContentqError(f"{path} is a folder; give the path of a file to write")
    if not stat.S_ISREG(info.st_mode):
        raise ContentqError(f"{path} is not a regular file (a device, FIFO or socket); give the path of a file")
    return stat.S_IMODE(info.st_mode)


def write_file(path: Path, text: str, *, mode: int = 0o600) -> Path:
    """Write `text` to `path` atomically; a new file gets `mode`, a replaced one keeps its own. Returns the path."""
    path = path.expanduser()
    target = path.resolve() if path.is_symlink() else path  # write through a symlink, keep the link
    existing_mode = _refuse_unless_regular(target)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContentqError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ContentqError(f"cannot write in {folder}: {exc.strerror or exc}; check its permissions") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), existing_mode if existing_mode is not None else mode)
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise ContentqError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return path
