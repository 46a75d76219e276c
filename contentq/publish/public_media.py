"""Media made reachable for platforms that fetch them by URL (Instagram): copies under CONTENTQ_HOME/media/public.

Instagram downloads each image from a public URL. The operator serves CONTENTQ_HOME/media at a public https base
(the route's `instagram.public_media_url`, e.g. with nginx or Caddy: docs/destinations.md); contentq puts a copy
of each image to send under `media/public/` with a random, unguessable name (24 random bytes), as a JPEG of a
size and shape Instagram takes, and removes the copies once the post is published.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from contentq.settings import Settings

PUBLIC_DIR = "public"
MAX_WIDTH = 1440
MIN_RATIO = 4 / 5
MAX_RATIO = 1.91
"""Instagram's feed takes widths up to 1440 px and aspect ratios from 4:5 to 1.91:1."""


def public_dir(settings: Settings) -> Path:
    return settings.media_dir / PUBLIC_DIR


def instagram_jpeg(data: bytes, background: str = "#ffffff") -> bytes:
    """The image as a JPEG Instagram accepts: RGB, at most 1440 px wide, padded into 4:5 … 1.91:1."""
    with Image.open(io.BytesIO(data)) as source:
        image = ImageOps.exif_transpose(source).convert("RGB")
    ratio = image.width / image.height
    if ratio < MIN_RATIO:
        image = ImageOps.pad(image, (round(image.height * MIN_RATIO), image.height), color=background)
    elif ratio > MAX_RATIO:
        image = ImageOps.pad(image, (image.width, round(image.width / MAX_RATIO)), color=background)
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def write_public(settings: Settings, data: bytes, suffix: str = ".jpg") -> Path:
    """Write `data` under media/public with an unguessable name (atomically); returns the file."""
    folder = public_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{secrets.token_urlsafe(24)}{suffix}"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # the web server serving the folder must read it
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def public_url(settings: Settings, base: str, path: Path) -> str:
    return f"{base.rstrip('/')}/{path.relative_to(settings.media_dir).as_posix()}"


def publish_image(settings: Settings, base: str, data: bytes) -> tuple[str, Path]:
    """A public copy of an image for Instagram: (its URL, its file)."""
    path = write_public(settings, instagram_jpeg(data))
    return public_url(settings, base, path), path


def remove(settings: Settings, names: list[str]) -> None:
    for name in names:
        path = public_dir(settings) / Path(name).name
        path.unlink(missing_ok=True)
