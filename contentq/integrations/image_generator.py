"""The image generator Protocol, what a generator returns, and the check that bytes are a real raster image."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

from contentq.errors import ContentqError, FatalJobError

RASTER_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
"""Formats Telegram shows as a photo (GIF as an animation); anything else is refused."""

MAX_PIXELS = 64_000_000
"""Larger images are refused (Pillow's decompression-bomb guard, made explicit)."""


class ImageError(ContentqError):
    """An image could not be made; worth another attempt unless a subclass says otherwise."""


class ImageFatalError(ImageError, FatalJobError):
    """Retrying cannot help: the request was refused, the answer is not an image, the setup is wrong."""


class ContentPolicyError(ImageFatalError):
    """The image API refused the prompt under its content policy."""


class NotAnImageError(ImageFatalError):
    """The bytes are not a raster image (an SVG, HTML, JSON or text answer)."""


class BrokenImageError(ImageError):
    """The bytes look like a raster image but do not decode (truncated download): another attempt may work."""


@dataclass
class GeneratedImage:
    data: bytes
    mime: str
    width: int
    height: int
    backend: str
    model: str | None = None
    revised_prompt: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ext(self) -> str:
        return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}[self.mime]


class ImageGenerator(Protocol):
    """Makes one image for a post. `text` is what the image is about: an image prompt or the card's words."""

    name: str

    def generate(self, text: str) -> GeneratedImage: ...


@dataclass(frozen=True)
class RasterInfo:
    format: str
    mime: str
    width: int
    height: int


def _sniff(data: bytes) -> str:
    """A short human name for what non-image bytes seem to be."""
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if head.startswith((b"{", b"[")):
        return "JSON"
    if not data:
        return "empty"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "unknown binary"
    return "text"


def verify_raster(data: bytes, *, source: str = "the image API") -> RasterInfo:
    """Check with Pillow that `data` is a complete PNG/JPEG/WEBP/GIF; raise a clear error otherwise."""
    if not data:
        raise NotAnImageError(f"{source} returned no image data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
                probe.verify()  # checks chunk CRCs / structure without decoding everything
            if fmt in RASTER_FORMATS:
                with Image.open(io.BytesIO(data)) as full:
                    full.load()  # a truncated file fails here
    except UnidentifiedImageError:
        kind = _sniff(data)
        raise NotAnImageError(
            f"{source} returned {'SVG' if kind == 'SVG' else kind}/non-image data ({len(data)} bytes, "
            f"starting {data[:24]!r}), not a PNG/JPEG/WEBP image; Telegram needs a raster image: check "
            "CONTENTQ_IMAGE_MODEL and the server behind CONTENTQ_OPENAI_BASE_URL, or use the card backend"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise NotAnImageError(f"{source} returned an image too large to handle (over {MAX_PIXELS} pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BrokenImageError(f"{source} returned a damaged image ({exc}); another attempt may work") from None
    if fmt not in RASTER_FORMATS:
        raise NotAnImageError(
            f"{source} returned a {fmt or 'unknown'} image; only PNG, JPEG, WEBP and GIF can be posted"
        )
    if width * height > MAX_PIXELS:
        raise NotAnImageError(f"{source} returned a {width}x{height} image, larger than contentq accepts")
    return RasterInfo(format=fmt, mime=RASTER_FORMATS[fmt], width=width, height=height)
