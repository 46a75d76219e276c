"""Shared by the web tests: the real app on the test's store and Valkey, jobs and posts put into the store."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from contentq.clock import iso
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.web.app import create_app
from contentq.web.auth import load_token
from tests.conftest import wait_for
from tests.publish_helpers import add_media, add_post, route_toml, write_config

LONG_CAPTION = (
    "Five photos from the #launch day with @contentq_team — <b>bold</b>, <i>italic</i>, a "
    '<a href="https://example.com/report">report</a> and a secret: <tg-spoiler>the date is June 1</tg-spoiler>. '
    + "More words about the launch follow here, as a long caption does. "
    * 30
)


def client(rt: Runtime, *, token: bool = True) -> TestClient:
    tc = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    if token:
        tc.headers["Authorization"] = f"Bearer {load_token(rt.settings)}"
    return tc


def failed_job(rt: Runtime, key: str, error: str = "boom") -> str:
    row = enqueue(rt, "noop", key)
    rt.store.execute(
        "UPDATE jobs SET status = 'failed', error = ?, attempts = 1, finished_at = ? WHERE id = ?",
        (error, iso(), row["id"]),
    )
    return str(row["id"])


def photo(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG")
    return out.getvalue()


def album_post(rt: Runtime, *, state: str = "awaiting_approval") -> int:
    """An album of 5 photos of different shapes, a long caption with a spoiler, waiting for approval."""
    write_config(rt.settings.home, route_toml(extra='approval = true\nlong_text = "split"'))
    post_id = add_post(rt, LONG_CAPTION, state=state, kind="album")
    sizes = [(1200, 800), (800, 1200), (1000, 1000), (1600, 900), (900, 1200)]
    colours = [(220, 80, 60), (60, 140, 220), (90, 190, 110), (230, 190, 60), (150, 90, 200)]
    for position, ((w, h), colour) in enumerate(zip(sizes, colours, strict=True)):
        media_id = add_media(rt, post_id, position=position, data=photo(w, h, colour))
        rt.store.execute("UPDATE media SET width = ?, height = ?, mime = 'image/jpeg' WHERE id = ?", (w, h, media_id))
    return post_id


def login(tc: TestClient, rt: Runtime) -> str:
    """Log in through the form; returns the page's CSRF token."""
    response = tc.post("/login", data={"token": load_token(rt.settings)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = tc.get("/jobs", headers={"Accept": "text/html"})
    marker = 'name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def json_of(response: Any) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    return response.json()


@contextmanager
def serving(rt: Runtime) -> Iterator[str]:
    """`contentq web`'s app on uvicorn in a thread, on a free loopback port: its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(rt.settings, rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, timeout=20, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


PWN_JS = """(async () => {
  localStorage.setItem("pwned", "script ran");
  const page = await (await fetch("/")).text();
  const csrf = /name="csrf-token" content="([^"]+)"/.exec(page)[1];
  await fetch("/api/queues/publish/pause", {method: "POST", headers: {"X-CSRF-Token": csrf}});
})();
"""
"""What a hostile donor's script does in the panel's origin: read the CSRF token, pause the publish queue."""

HOSTILE_TYPES = {
    "page.html": "image/x,text/html",
    "pwn.js": "image/x,text/javascript",
    "spaced.html": "image/png, text/html",
    "logo.svg": "image/svg+xml",
    "crlf.html": "image/jpeg\r\nContent-Type: text/html",
    "trailing.html": "text/html\r\n",
}
"""An export's documents and the types the donor gave them: the issue's pair, a spaced variant, SVG, CR/LF."""


def hostile_export(folder: Path) -> Path:
    """A Telegram Desktop export whose documents are HTML, script and SVG typed so that a browser would render
    them as the panel's page and run the script (issue 28); returns its result.json."""
    files = folder / "files"
    files.mkdir(parents=True)
    scripts = "".join(f'<script src="/media/{n}"></script>' for n in range(1, 13))  # the .js file's id is one
    html = f"<!doctype html><title>hostile</title><h1>donor page</h1>{scripts}<script>{PWN_JS}</script>"
    bodies = {
        "pwn.js": PWN_JS,
        "logo.svg": f'<svg xmlns="http://www.w3.org/2000/svg"><script>{PWN_JS}</script>{scripts}</svg>',
    }
    messages = []
    for n, (name, mime) in enumerate(HOSTILE_TYPES.items(), start=1):
        (files / name).write_text(bodies.get(name, html.replace("donor page", name)))  # each file its own bytes
        messages.append(
            {"id": n, "type": "message", "date": f"2024-03-0{n}T10:00:00", "date_unixtime": str(1709287200 + n * 86400),
             "file": f"files/{name}", "mime_type": mime, "file_size": (files / name).stat().st_size,
             "text": f"document {name}", "text_entities": []}
        )  # fmt: skip
    result = folder / "result.json"
    result.write_text(json.dumps({"name": "Hostile donor", "type": "public_channel", "messages": messages}))
    return result


PASSWORDS = {"olga": "owner-password-1", "eddie": "editor-password-1", "vera": "viewer-password-1"}
"""The panel's people in the role tests: an owner, an editor of route news, a viewer."""


def two_routes(rt: Runtime) -> dict[str, int]:
    """Routes news and sport (both wait for approval), a post awaiting approval on each; their ids by route."""
    write_config(
        rt.settings.home,
        route_toml("news", extra="approval = true")
        + route_toml("sport", target="@sportchan", extra="approval = true", sources='["@sportdonor"]'),
    )
    return {r: add_post(rt, f"A {r} post", route=r, state="awaiting_approval") for r in ("news", "sport")}


def add_people(rt: Runtime) -> dict[str, str]:
    """olga (owner), eddie (editor of news), vera (viewer): each one's API token."""
    from contentq.people import users

    users.add_user(rt, "olga", "owner", PASSWORDS["olga"])
    users.add_user(rt, "eddie", "editor", PASSWORDS["eddie"], ["news"])
    users.add_user(rt, "vera", "viewer", PASSWORDS["vera"])
    return {name: users.issue_token(rt, name) for name in PASSWORDS}


def as_user(rt: Runtime, token: str) -> TestClient:
    tc = TestClient(create_app(rt.settings, rt), raise_server_exceptions=False)
    tc.headers["Authorization"] = f"Bearer {token}"
    return tc


def login_as(tc: TestClient, name: str, password: str | None = None) -> str:
    """Log in through the form with a name and password; returns the page's CSRF token."""
    response = tc.post("/login", data={"name": name, "password": password or PASSWORDS[name]}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = tc.get("/posts", headers={"Accept": "text/html"})
    marker = 'name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]
