"""Content-addressed media files under CONTENTQ_HOME/media: `<sha[:2]>/<sha><ext>`, written atomically."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    relpath: str  # relative to the media directory (what the media table keeps)
    size: int

    def path(self, media_dir: Path) -> Path:
        return media_dir / self.relpath


_TELEGRAM_TYPES = {"application/x-tgsticker": ".tgs", "audio/ogg": ".ogg"}
"""Types Telegram uses that `mimetypes` does not name as Telegram does (an animated sticker, a voice message)."""


def extension_for(mime: str | None, default: str = ".bin") -> str:
    if not mime:
        return default
    mime = mime.split(";")[0].strip().lower()
    if mime in _TELEGRAM_TYPES:
        return _TELEGRAM_TYPES[mime]
    ext = mimetypes.guess_extension(mime)
    return {".jpe": ".jpg", ".jpeg": ".jpg"}.get(ext or "", ext or default)


def store_bytes(media_dir: Path, data: bytes, *, mime: str | None = None, ext: str | None = None) -> StoredFile:
    """Save `data` once by its SHA-256; storing the same bytes again returns the existing file."""
    sha = hashlib.sha256(data).hexdigest()
    suffix = ext if ext is not None else extension_for(mime)
    relpath = f"{sha[:2]}/{sha}{suffix}"
    target = media_dir / relpath
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)  # atomic: a reader never sees half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return StoredFile(sha256=sha, relpath=relpath, size=len(data))


def human_bytes(n: int | None) -> str:
    """1536 → '1.5 KB'; None → '—'."""
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def store_file(media_dir: Path, source: Path, *, mime: str | None = None) -> StoredFile:
    return store_bytes(media_dir, source.read_bytes(), mime=mime, ext=source.suffix.lower() or None)
