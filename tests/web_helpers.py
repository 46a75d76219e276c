"""Shared by the web tests: the real app on the test's store and Valkey, jobs and posts put into the store."""

from __future__ import annotations

import io
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from contentq.clock import iso
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.web.app import create_app
from contentq.web.auth import load_token
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
