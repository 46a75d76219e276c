"""Media types (MIME types) from outside: checked where media enters, and the short list shown inline.

A donor chooses a document's type (an export's `mime_type`, Telegram's `mime_type`), so it is untrusted: a
type such as `image/x,text/html` is read by a browser as HTML. Where media enters (import, collect and listen),
`clean_media_type` keeps a well-formed `type/subtype` (lower-cased, parameters dropped) and replaces anything
else by `application/octet-stream`, with a warning that names the message. The panel shows a file inline only
when its stored type is exactly one of INLINE_TYPES (`inline_type`); every other one is a download.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("contentq.media")

FALLBACK = "application/octet-stream"

INLINE_TYPES = frozenset(
    {
        # photos, stickers, GIFs as images
        "image/jpeg", "image/png", "image/gif", "image/webp",
        # videos, round videos, GIFs (Telegram sends them as MP4), video stickers
        "video/mp4", "video/webm", "video/quicktime",
        # music and voice messages
        "audio/mpeg", "audio/ogg", "audio/mp4", "audio/x-m4a", "audio/aac", "audio/flac", "audio/wav",
        "audio/webm",
    }
)  # fmt: skip
"""The photo, video and audio types Telegram uses that a browser plays or shows without running anything (no
SVG: it can carry script)."""

_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_TYPE = re.compile(rf"(?:application|audio|font|image|model|text|video)/{_TOKEN}")
"""RFC 6838's `type/subtype` with a registered top-level type; lower case (the caller lowers it)."""


def clean_media_type(value: str | None, where: str) -> str | None:
    """The type to store for a file that came with `value` (None stays None: unknown). `where` names the
    message in the warning given when the value is replaced or trimmed."""
    if value is None:
        return None
    essence = value.split(";", 1)[0].strip(" ").lower()  # parameters (`; codecs=opus`) say nothing we use
    if _TYPE.fullmatch(essence) and value.isprintable():  # no CR, LF or other control character anywhere
        if essence != value:
            log.info("%s: media type %r stored as %r", where, value[:100], essence)
        return essence
    log.warning(
        "%s: media type %r is not a single valid type (type/subtype); stored as %s, so the panel offers the"
        " file as a download",
        where,
        value[:100],
        FALLBACK,
    )
    return FALLBACK


def inline_type(stored: str | None) -> str | None:
    """The Content-Type to show a stored file inline with, or None: a download. Exact match only: a value with
    parameters, commas, spaces, CR/LF or capitals (stored before types were checked) is a download too."""
    return stored if stored in INLINE_TYPES else None
