"""OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as X's user-context authentication wants it.

The signature covers the method, the URL without its query, and every oauth_* parameter, query parameter and
form field (a JSON or multipart body is not signed). Checked against the worked example in X's documentation
("Creating a signature") in tests/test_x.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit


def pct(value: str) -> str:
    """RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - . _ ~."""
    return quote(value, safe="-._~")


@dataclass(frozen=True)
class OAuth1Credentials:
    consumer_key: str
    consumer_secret: str
    token: str
    token_secret: str


def base_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.lower()
    scheme = parts.scheme.lower()
    if (scheme, netloc.rsplit(":", 1)[-1]) in (("http", "80"), ("https", "443")):
        netloc = netloc.rsplit(":", 1)[0]
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def signature(method: str, url: str, params: Iterable[tuple[str, str]], consumer_secret: str, token_secret: str) -> str:
    """The oauth_signature of a request whose signed parameters (oauth_* included) are `params`."""
    pairs = sorted((pct(k), pct(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join((method.upper(), pct(base_url(url)), pct(normalized)))
    key = f"{pct(consumer_secret)}&{pct(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def authorization(
    credentials: OAuth1Credentials,
    method: str,
    url: str,
    params: Iterable[tuple[str, str]] = (),
    *,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The Authorization header of a request: `params` are its query parameters and form fields."""
    oauth = {
        "oauth_consumer_key": credentials.consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "oauth_token": credentials.token,
        "oauth_version": "1.0",
    }
    query = [(k, v) for k, v in _query_pairs(url)]
    oauth["oauth_signature"] = signature(
        method, url, [*oauth.items(), *query, *params], credentials.consumer_secret, credentials.token_secret
    )
    return "OAuth " + ", ".join(f'{pct(k)}="{pct(v)}"' for k, v in sorted(oauth.items()))


def _query_pairs(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def parse_authorization(header: str) -> dict[str, str]:
    """The oauth_* parameters of an `Authorization: OAuth …` header (for servers: the tests' fake X)."""
    from urllib.parse import unquote

    if not header.startswith("OAuth "):
        return {}
    out: dict[str, str] = {}
    for item in header[len("OAuth ") :].split(","):
        key, _, value = item.strip().partition("=")
        out[unquote(key)] = unquote(value.strip('"'))
    return out
