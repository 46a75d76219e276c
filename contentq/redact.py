"""Keep secrets out of logs, job records, Redis results and CLI output: one function, used at every sink.

Masked: every registered secret (the secret settings, URL passwords and their Basic-auth form, session
strings), and whatever looks like a credential even when nobody registered it: `sk-…` keys, Bearer/Basic
tokens, `api_key=…`, URL userinfo, Telethon session strings. The sinks are the store writes (job records,
events, post reasons, notifications), the logging formatters, the CLI renderer and what a job hands to RQ.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# Things that look like credentials even when nobody registered them: (pattern, keep group 1 and 2 around it).
# A credential never holds a backtick or angle brackets: "`Authorization: Bearer <token>`" in a help text is a
# placeholder, and the backtick that closes the quoted header is not part of a token either.
_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?<![A-Za-z0-9_\-])cq_[A-Za-z0-9_\-]{30,}"),  # a panel user's API token (contentq.people)
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*+['\"]?+(?:bearer|basic|token)?+\s*+)(?!<)[^\s'\",}`<>]+"),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/\-]{6,}=*"),
    re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*+['\"]?+)(?!<)[^\s'\",}`<>&]+"),
    re.compile(r"(?i)(\b(?:password|passwd|secret|token)=)[^\s'\",}&]+"),  # query strings, env lines
    re.compile(r"(?i)(\"(?:password|passwd|secret|token|api_?key)\"\s*:\s*\")[^\"]+"),  # JSON
    re.compile(r"(://[^:/@\s]*:)[^@\s/]+(@)"),  # a password in a URL
    re.compile(r"(?<![\w.@/:-])([\w.\-~%]+:)[^@\s/]+(@[\w.\-]+[:/])"),  # user:password@host/ with no scheme
    re.compile(r"(://)[^:/@\s]+(@)"),  # userinfo without a password (often a token)
    re.compile(r"(?<![A-Za-z0-9_\-])1[A-Za-z0-9_\-]{200,}={0,2}"),  # a Telethon StringSession
]


def register_secret(*values: str | None) -> None:
    """Remember values (API keys, session strings, passwords) that must never be printed or stored."""
    with _lock:
        for value in values:
            if value and len(value) >= 6:
                _secrets.add(value)


def register_url(url: str | None) -> None:
    """Register the credentials in a URL's userinfo, as written, decoded, and as the Basic-auth token."""
    if not url or "@" not in url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    user, password = parts.username or "", parts.password or ""
    register_secret(password, unquote(password))
    if user and not password:
        register_secret(user, unquote(user))
    if user or password:
        basic = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        register_secret(basic)


def _mask(pattern: re.Pattern[str], s: str) -> str:
    if pattern.groups >= 2:
        return pattern.sub(lambda m: m.group(1) + MASK + m.group(2), s)
    if pattern.groups == 1:
        return pattern.sub(lambda m: m.group(1) + MASK, s)
    return pattern.sub(MASK, s)


def redact(text: object, extra: Iterable[str] = ()) -> str:
    s = str(text)
    with _lock:
        secrets = sorted(_secrets | {e for e in extra if e}, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, MASK)
    for pattern in _PATTERNS:
        s = _mask(pattern, s)
    return s


def redact_data(value: Any) -> Any:
    """`redact` applied to every string inside dicts, lists and tuples (job results, JSON output)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(v) for v in value)
    return value


class RedactedError(Exception):
    """What a failed job hands to RQ instead of the original exception: RQ stores the exception text for
    days (`rq:results:*` exc_string, the failed registry), so it must hold nothing secret."""

    def __init__(self, exc: BaseException, traceback_text: str = "") -> None:
        head = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        super().__init__(redact(f"{head}\n{traceback_text}".rstrip()))
        self.original_type = type(exc).__name__
