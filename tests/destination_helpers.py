"""Shared by the destination tests: the fake platforms' accounts written into contentq.toml and .env, a static
server for CONTENTQ_HOME/media (what `instagram.public_media_url` points at), and lookups."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from contentq.runtime.context import Runtime
from contentq.store.deliveries import deliveries_of
from tests.fake_x import CREDENTIALS

X_ENV = {
    "CONTENTQ_X_MAIN_CONSUMER_KEY": CREDENTIALS.consumer_key,
    "CONTENTQ_X_MAIN_CONSUMER_SECRET": CREDENTIALS.consumer_secret,
    "CONTENTQ_X_MAIN_ACCESS_TOKEN": CREDENTIALS.token,
    "CONTENTQ_X_MAIN_ACCESS_TOKEN_SECRET": CREDENTIALS.token_secret,
}
IG_TOKEN = "IGQVJfake-brand-token-0001"
IG_USER = "17841400000000001"
IG_ENV = {"CONTENTQ_INSTAGRAM_BRAND_ACCESS_TOKEN": IG_TOKEN}


def routes_toml(
    destinations: list[str],
    *,
    x_api: str | None = None,
    ig_api: str | None = None,
    public_url: str | None = None,
    x_options: str = "",
    ig_options: str = "",
    x_limit: str = "",
) -> str:
    text = (
        f'[routes.news]\ndestinations = {destinations!r}\nsources = ["@donor"]\nrewriter = "none"\n'
        "[routes.news.schedule]\nasap = true\n"
    ).replace("'", '"')
    if x_options:
        text += f"[routes.news.x]\n{x_options}\n"
    if public_url or ig_options:
        text += f'[routes.news.instagram]\npublic_media_url = "{public_url or ""}"\n{ig_options}\n'
    if x_api:
        text += f'[accounts.x.main]\napi_base = "{x_api}"\n{x_limit}\n'
    if ig_api:
        text += f'[accounts.instagram.brand]\nuser_id = "{IG_USER}"\napi_base = "{ig_api}"\n'
    return text


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class StaticServer:
    """Serves a folder over HTTP, as the operator's web server serves CONTENTQ_HOME/media."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Quiet, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def delivery(rt: Runtime, post_id: int, destination: str) -> dict[str, Any]:
    return next(d for d in deliveries_of(rt.store, post_id) if d["destination"] == destination)


def deliver_job(rt: Runtime, post_id: int, destination: str) -> dict[str, Any]:
    row = rt.store.one(
        "SELECT * FROM jobs WHERE kind = 'deliver' AND key = ? ORDER BY rowid DESC LIMIT 1",
        (f"{post_id}:{destination}",),
    )
    assert row is not None
    return row
