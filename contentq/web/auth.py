"""The panel's one secret: a token in CONTENTQ_HOME/web-token (0600), a session cookie and CSRF tokens derived from it.

The API takes the token as `Authorization: Bearer …`; the browser logs in once with it and gets an HttpOnly,
SameSite=Strict cookie holding an HMAC of the token (never the token itself). A form or fetch that changes
something sends a CSRF token, another HMAC of the token, from the page. Rotating the token (`contentq web
token --rotate`) logs every browser out and invalidates every CSRF token at once: nothing is stored but the token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from contentq.errors import ContentqError
from contentq.ops.output_file import write_file
from contentq.redact import register_secret
from contentq.settings import Settings

TOKEN_FILE = "web-token"
COOKIE = "contentq_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def token_path(settings: Settings) -> Path:
    return settings.home / TOKEN_FILE


def _write(path: Path, token: str) -> None:
    write_file(path, token + "\n", mode=0o600)
    os.chmod(path, 0o600)  # a file replaced by hand keeps no wider mode


def load_token(settings: Settings, *, create: bool = True) -> str:
    """The token, generated on first use; registered with redact so no log or page can show it."""
    path = token_path(settings)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            raise ContentqError(f"no web token yet ({path}); `contentq web token` creates one") from None
        token = ""
    except OSError as exc:
        raise ContentqError(f"cannot read the web token {path}: {exc.strerror or exc}") from None
    if len(token) < 20:
        if token:
            raise ContentqError(f"the web token in {path} is too short; `contentq web token --rotate` replaces it")
        token = secrets.token_urlsafe(32)
        _write(path, token)
    register_secret(token)
    return token


def rotate_token(settings: Settings) -> str:
    token = secrets.token_urlsafe(32)
    _write(token_path(settings), token)
    register_secret(token)
    return token


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    return _mac(token, "session")


def csrf_token(token: str) -> str:
    return _mac(token, "csrf")


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())
