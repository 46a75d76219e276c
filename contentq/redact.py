"""Keep secrets out of logs, job records and error messages."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

_lock = threading.Lock()
_secrets: set[str] = set()

# Things that look like credentials even when nobody registered them.
_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(authorization:\s*bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"(?i)(://[^:/@\s]*:)[^@\s]+(@)"),  # password in a URL
]


def register_secret(*values: str | None) -> None:
    """Remember values (API keys, session strings) that must never be printed."""
    with _lock:
        for value in values:
            if value and len(value) >= 6:
                _secrets.add(value)


def redact(text: object, extra: Iterable[str] = ()) -> str:
    s = str(text)
    with _lock:
        secrets = sorted(_secrets | {e for e in extra if e}, key=len, reverse=True)
    for secret in secrets:
        s = s.replace(secret, "***")
    for pattern in _PATTERNS:
        if pattern.groups >= 2:
            s = pattern.sub(lambda m: m.group(1) + "***" + m.group(2), s)
        elif pattern.groups == 1:
            s = pattern.sub(lambda m: m.group(1) + "***", s)
        else:
            s = pattern.sub("***", s)
    return s
