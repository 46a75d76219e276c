"""The panel against hostile input (issue 28): media types, parameters beyond SQLite's range, oversized bodies,
sessions, flash messages, bidi controls; and the small page bugs. Real app, real SQLite, the test Valkey."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from contentq.collect import ForegroundContext
from contentq.content.media_types import FALLBACK, INLINE_TYPES, clean_media_type, inline_type
from contentq.imports import import_export
from contentq.runtime.context import Runtime
from tests.publish_helpers import add_media, add_post
from contentq.web.auth import load_token
from tests.web_helpers import HOSTILE_TYPES, client, hostile_export, json_of, serving

HOSTILE_ROUTES = """
[routes.news]
target = "@mine"
sources = ["@hostile"]
rewriter = "none"
"""


def bearer(rt: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {load_token(rt.settings)}"}


def _media_typed(rt: Runtime, mime: str | None) -> int:
    post_id = add_post(rt, "files", state="awaiting_approval")
    media_id = add_media(rt, post_id, "document", data=f"<script>alert(1)</script> {mime!r}".encode())
    rt.store.execute("UPDATE media SET mime = ? WHERE id = ?", (mime, media_id))
    return media_id


# -- media types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    ["image/x,text/html", "image/x,text/javascript", "image/png, text/html", "image/svg+xml", "text/html",
     "image/jpeg; charset=x", "IMAGE/JPEG", "image/jpeg\r\nContent-Type: text/html", "image/x-icon", "image/",
     "video/x-anything", None, ""],
)  # fmt: skip
def test_media_not_on_the_allow_list_is_a_sandboxed_download(rt: Runtime, stored: str | None) -> None:
    response = client(rt).get(f"/media/{_media_typed(rt, stored)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("stored", ["image/jpeg", "image/webp", "video/mp4", "video/webm", "audio/ogg", "audio/mpeg"])
def test_photo_video_and_audio_types_are_shown_inline_sandboxed(rt: Runtime, stored: str) -> None:
    response = client(rt).get(f"/media/{_media_typed(rt, stored)}")
    assert response.status_code == 200 and response.headers["content-type"] == stored
    assert "content-disposition" not in response.headers
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_every_media_answer_is_sandboxed_even_an_error(rt: Runtime) -> None:
    for response in (client(rt).get("/media/999999"), client(rt, token=False).get("/media/1")):
        assert response.status_code in (401, 404)
        assert response.headers["content-security-policy"] == "sandbox"


def test_a_stored_type_with_cr_lf_gets_an_answer_over_http(rt: Runtime) -> None:
    # Through uvicorn: a CR/LF in a header used to make it drop the connection without an answer.
    media_id = _media_typed(rt, "image/jpeg\r\nX-Injected: 1")
    with serving(rt) as base:
        response = httpx.get(f"{base}/media/{media_id}", headers=bearer(rt), timeout=10)
    assert response.status_code == 200 and "x-injected" not in response.headers
    assert response.headers["content-type"] == "application/octet-stream"


def test_media_types_are_checked_where_they_enter(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "contentq.media")
    assert clean_media_type("image/jpeg", "@d:1") == "image/jpeg"
    assert clean_media_type("Audio/OGG; codecs=opus", "@d:2") == "audio/ogg"
    assert clean_media_type(None, "@d:3") is None
    for hostile in ("image/x,text/html", "image/jpeg\r\nX: y", "text/html\r\n", "image/png, text/html", "", "x",
                    "image/svg+xml<script>", "application/" + "a" * 200):  # fmt: skip
        assert clean_media_type(hostile, "@d:9") == FALLBACK, hostile
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 8 and all("@d:9" in w and "stored as application/octet-stream" in w for w in warned)
    assert "'image/x,text/html' is not a single valid type" in warned[0]
    assert all(inline_type(t) == t for t in INLINE_TYPES) and inline_type("image/svg+xml") is None


def test_a_hostile_export_is_stored_with_safe_types(rt: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (rt.settings.home / "contentq.toml").write_text(HOSTILE_ROUTES)
    report = import_export(ForegroundContext(rt), hostile_export(tmp_path / "export"), "@hostile")
    assert report.counts.collected == len(HOSTILE_TYPES)
    rows = rt.store.query("SELECT p.source_msg_id AS msg, m.mime FROM media m JOIN posts p ON p.id = m.post_id")
    assert {r["msg"]: r["mime"] for r in rows} == {1: FALLBACK, 2: FALLBACK, 3: FALLBACK, 4: "image/svg+xml",
                                                   5: FALLBACK, 6: FALLBACK}  # fmt: skip
    assert "@hostile:1: media type 'image/x,text/html' is not a single valid type" in caplog.text
    tc = client(rt)
    for media_id in [r["id"] for r in rt.store.query("SELECT id FROM media")]:
        response = tc.get(f"/media/{media_id}")
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment;")


# -- parameters and bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor", ["2099-01-01~99999999999999999999999", f"2099-01-01~{2**63}", "~1", "\x00~1", "2099-01-01~²", "x~1"]
)
def test_a_cursor_beyond_sqlite_or_malformed_is_a_400_on_the_api_and_the_page(rt: Runtime, cursor: str) -> None:
    tc = client(rt)
    api = tc.get("/api/jobs", params={"cursor": cursor})
    assert api.status_code == 400 and "bad cursor" in json_of(api)["error"], api.text
    page = tc.get("/jobs", params={"cursor": cursor}, headers={"Accept": "text/html"})
    assert page.status_code == 400 and "bad cursor" in page.text and "<h1>Error 400</h1>" in page.text


def test_a_20_mb_job_payload_is_refused_with_413_and_nothing_is_stored(rt: Runtime) -> None:
    tc = client(rt)
    huge = {"kind": "noop", "key": "big", "payload": {"blob": "x" * 20_000_000}}
    response = tc.post("/api/jobs", json=huge)
    assert response.status_code == 413, response.text[:200]
    assert "request body too large" in json_of(response)["error"] and "CONTENTQ_WEB_MAX_BODY_KB" in response.text
    chunked = tc.post("/api/jobs", content=iter([b'{"kind": "noop", "key": "big", "payload": {"b": "'] + [b"x" * 65536] * 40
                                             + [b'"}}']), headers={"Content-Type": "application/json"})  # fmt: skip
    assert chunked.status_code == 413 and "request body too large" in json_of(chunked)["error"]
    within_body = tc.post("/api/jobs", json={"kind": "noop", "key": "mid", "payload": {"blob": "x" * 100_000}})
    assert within_body.status_code == 413 and "the job payload is 100012 bytes" in json_of(within_body)["error"]
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs") == 0
    form = tc.post("/posts/1/edit", data={"html": "x" * 2_000_000}, headers={"Accept": "text/html"})
    assert form.status_code == 413 and "request body too large" in form.text


def test_the_body_limit_is_a_setting(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt.settings, "web_max_body_kb", 1)
    tc = client(rt)
    assert tc.post("/api/jobs", json={"kind": "noop", "key": "k", "payload": {"a": "x" * 2000}}).status_code == 413
    assert tc.post("/api/jobs", json={"kind": "noop", "key": "k", "payload": {"a": "x" * 100}}).status_code == 201


def test_a_payload_or_key_that_cannot_be_stored_is_a_4xx(rt: Runtime) -> None:
    tc = client(rt)
    for body in ('{"kind": "noop", "key": "k", "payload": {"a": "\\ud800"}}', '{"kind": "noop", "key": "k\\u0000"}'):
        response = tc.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500 and json_of(response)["error"], (body, response.text)
    assert rt.store.scalar("SELECT COUNT(*) FROM jobs") == 0
