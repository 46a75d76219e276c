"""`contentq doctor`'s checks of the destinations routes publish to (docs/destinations.md): each X account's
credentials (`GET /2/users/me`), each Instagram account's token (`GET /{ig-user-id}?fields=username`), and each
`instagram.public_media_url` (a probe file written under CONTENTQ_HOME/media/public, fetched back through the
URL, then removed). Each failure says how to fix it."""

from __future__ import annotations

import secrets

import httpx

from contentq.errors import ContentqError
from contentq.integrations.instagram import InstagramAuthFailed, InstagramClient
from contentq.integrations.oauth1 import OAuth1Credentials
from contentq.integrations.x import XAuthFailed, XClient
from contentq.ops.probe import FAIL, OK, WARN, Probe
from contentq.publish.public_media import public_dir, public_url, write_public
from contentq.routes import RoutesConfig
from contentq.settings import ACCOUNT_SECRETS, Settings, account_secret, account_variable

TIMEOUT = 5.0
DOCS = "docs/destinations.md"


def _missing(settings: Settings, platform: str, account: str) -> list[str]:
    return [
        account_variable(platform, account, f)
        for f in ACCOUNT_SECRETS[platform]
        if not account_secret(settings, platform, account, f)
    ]


def check_x(settings: Settings, routes: RoutesConfig, account: str) -> Probe:
    name = f"destination x:{account}"
    missing = _missing(settings, "x", account)
    if missing:
        return Probe(name, FAIL, f"no credentials: {', '.join(missing)} unset",
                     f"set them in .env: the X app's API Key and Secret, and the account's Access Token and Secret "
                     f"(Read and Write) — {DOCS}")  # fmt: skip
    creds = OAuth1Credentials(*(str(account_secret(settings, "x", account, f)) for f in ACCOUNT_SECRETS["x"]))
    client = XClient(creds, account=account, api_base=routes.x_account(account).api_base, timeout=TIMEOUT)
    try:
        me = client.me()
    except XAuthFailed as exc:
        return Probe(name, FAIL, str(exc), "regenerate the Access Token and Secret with Read and Write permission "
                     f"in the X developer portal, then put them in .env ({DOCS})")  # fmt: skip
    except ContentqError as exc:
        return Probe(name, WARN, f"X could not be asked: {exc}", "check the network; `contentq doctor` again")
    finally:
        client.close()
    return Probe(name, OK, f"posts as @{me.get('username')} (id {me.get('id')})")


def check_instagram(settings: Settings, routes: RoutesConfig, account: str) -> Probe:
    name = f"destination instagram:{account}"
    try:
        config = routes.instagram_account(account)
    except ContentqError as exc:
        return Probe(name, FAIL, str(exc), f"add the account to contentq.toml ({DOCS})")
    token = account_secret(settings, "instagram", account, "access_token")
    if not token:
        variable = account_variable("instagram", account, "access_token")
        return Probe(name, FAIL, f"no access token: {variable} unset",
                     f"put a long-lived token with instagram_business_content_publish in .env ({DOCS})")  # fmt: skip
    client = InstagramClient(config.user_id, token, account=account, api_base=config.api_base, timeout=TIMEOUT)
    try:
        username = client.username()
    except InstagramAuthFailed as exc:
        return Probe(name, FAIL, str(exc), f"renew the long-lived token (it lasts 60 days) and put it in .env ({DOCS})")
    except ContentqError as exc:
        return Probe(name, WARN, f"Instagram could not be asked: {exc}", "check the network and user_id")
    finally:
        client.close()
    return Probe(name, OK, f"publishes as @{username} (IG user {config.user_id})")


def check_public_media(settings: Settings, route: str, base: str) -> Probe:
    """Instagram fetches the images from `base`: a probe file must come back through it, byte for byte."""
    name = f"public media ({route})"
    body = secrets.token_hex(16).encode()
    try:
        path = write_public(settings, body, ".txt")
    except OSError as exc:
        return Probe(name, FAIL, f"cannot write {public_dir(settings)}: {exc}", "make CONTENTQ_HOME/media writable")
    url = public_url(settings, base, path)
    try:
        response = httpx.get(url, timeout=TIMEOUT, follow_redirects=True)
        fetched = response.content if response.status_code == 200 else None
        status = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        fetched, status = None, f"{type(exc).__name__}: {exc}"
    finally:
        path.unlink(missing_ok=True)
    if fetched != body:
        return Probe(name, FAIL, f"{base} does not serve CONTENTQ_HOME/media ({url}: {status})",
                     f"serve {settings.media_dir} at {base} over https (nginx/Caddy: {DOCS}); Instagram fetches "
                     "the images there")  # fmt: skip
    return Probe(name, OK, f"{base} serves {settings.media_dir}")


def check_destinations(settings: Settings, routes: RoutesConfig | None) -> list[Probe]:
    """One probe per X or Instagram account the routes publish to, and per public media base."""
    if routes is None:
        return []
    probes: list[Probe] = []
    accounts = sorted({d.key: d for r in routes.routes.values() for d in r.destination_list}.items())
    for _, dest in accounts:
        if dest.platform == "x":
            probes.append(check_x(settings, routes, dest.account))
        elif dest.platform == "instagram":
            probes.append(check_instagram(settings, routes, dest.account))
    bases: dict[str, str] = {}
    for route in routes.routes.values():
        base = route.instagram.public_media_url
        if base and any(d.platform == "instagram" for d in route.destination_list):
            bases.setdefault(base, route.name)
    probes += [check_public_media(settings, route, base) for base, route in sorted(bases.items())]
    return probes
