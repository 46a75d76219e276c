"""The OpenAI backend and the imagegen job against local OpenAI-compatible servers, through the real SDK:
a PNG answer attached to its post, llmock's SVG answer refused, 3 failed attempts then failed, and a
content-policy refusal failed at once. Real Valkey and SQLite; the worker runs in-process."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from llmock.testing import LLMockServer
from PIL import Image

from contentq.clock import iso
from contentq.flow import pipeline
from contentq.images.service import request_image
from contentq.integrations.image_generator import ContentPolicyError, NotAnImageError
from contentq.integrations.images_openai import OpenAIImageGenerator, request_params
from contentq.runtime.context import Runtime, set_process_runtime
from contentq.settings import Settings, load_settings
from contentq.store.jobs import get_job, job_events
from tests.conftest import drain

MODERATION_BLOCKED = {
    "error": {
        "message": "Your request was rejected by the safety system. If you believe this is an error, contact us.",
        "type": "image_generation_user_error",
        "param": None,
        "code": "moderation_blocked",
    }
}
SERVER_ERROR = {"error": {"message": "The server had an error processing your request.", "type": "server_error",
                          "param": None, "code": None}}  # fmt: skip


def make_png(width: int = 64, height: int = 48, colour: str = "#ff8800") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


class ImageAPI:
    """A tiny OpenAI-compatible images server: POST /v1/images/generations answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.default: tuple[int, dict[str, Any]] = (200, self.png_answer(make_png()))
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                api.requests.append({"path": self.path, "body": body, "auth": self.headers.get("authorization")})
                if self.path != "/v1/images/generations":
                    status, answer = 404, {"error": {"message": "not found", "type": "invalid_request_error"}}
                else:
                    status, answer = api.script.pop(0) if api.script else api.default
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def png_answer(data: bytes) -> dict[str, Any]:
        return {"created": 1700000000, "data": [{"b64_json": base64.b64encode(data).decode()}]}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def image_api() -> Iterator[ImageAPI]:
    api = ImageAPI()
    api.thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture
def llmock_server() -> Iterator[LLMockServer]:
    with LLMockServer() as server:
        yield server


def runtime_for(home: Path, base_url: str, **overrides: Any) -> Runtime:
    settings = load_settings(
        home=home, openai_base_url=base_url, openai_api_key="sk-test-images", imagegen_backoff_base=1.0,
        worker_maintenance_interval=1, **overrides,
    )  # fmt: skip
    rt = Runtime(settings)
    set_process_runtime(rt)
    return rt


@pytest.fixture
def api_rt(home: Path, image_api: ImageAPI) -> Iterator[Runtime]:
    rt = runtime_for(home, image_api.base_url)
    yield rt
    rt.close()


@pytest.fixture
def image_done(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """What the imagegen job told the pipeline (the publish area decides what happens next)."""
    calls: list[tuple[int, bool]] = []

    def record(runtime: Runtime, post_id: int, ok: bool) -> str:
        calls.append((post_id, ok))
        return "recorded"

    monkeypatch.setattr(pipeline, "on_image_done", record)
    return calls


def insert_post(rt: Runtime, *, state: str = "rewritten", image_prompt: str | None = "a red fox in snow",
                title: str | None = "Лиса в снегу", route: str = "news") -> int:  # fmt: skip
    stamp = iso()
    cursor = rt.store.execute(
        "INSERT INTO posts (route, text_html, rewrite_html, title, image_prompt, state, collected_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (route, "Донорский текст.", "<b>Лиса</b> вышла на охоту.", title, image_prompt, state, stamp, stamp),
    )
    return int(cursor.lastrowid or 0)


def events(rt: Runtime, job_id: str) -> list[str]:
    return [e["event"] for e in job_events(rt.store, job_id)]


# -- the backend on its own ------------------------------------------------------------------------------


def test_request_uses_the_image_settings(home: Path):
    settings = load_settings(home=home, image_model="gpt-image-1", image_size="1536x1024", image_quality="high")
    assert request_params(settings, "p") == {
        "model": "gpt-image-1",
        "prompt": "p",
        "n": 1,
        "size": "1536x1024",
        "quality": "high",
    }  # fmt: skip  (GPT image models always answer in base64 and reject response_format)
    dalle = load_settings(home=home, image_model="dall-e-3", image_quality="medium")
    assert request_params(dalle, "p")["quality"] == "standard"
    assert request_params(dalle, "p")["response_format"] == "b64_json"


def test_png_answer_is_returned_verified(home: Path, image_api: ImageAPI):
    settings = load_settings(home=home, openai_base_url=image_api.base_url, openai_api_key="sk-test-images",
                             image_model="gpt-image-1", image_size="1024x1536", image_quality="low")  # fmt: skip
    image = OpenAIImageGenerator(settings).generate("a lighthouse at dusk")
    assert (image.mime, image.width, image.height, image.backend) == ("image/png", 64, 48, "openai")
    assert image.data == make_png()
    sent = image_api.requests[-1]
    assert sent["body"] == {"model": "gpt-image-1", "prompt": "a lighthouse at dusk", "n": 1,
                            "size": "1024x1536", "quality": "low"}  # fmt: skip
    assert sent["auth"] == "Bearer sk-test-images"


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-3"])
def test_llmock_svg_answer_is_rejected_with_a_clear_error(home: Path, llmock_server: LLMockServer, model: str):
    settings = load_settings(home=home, openai_base_url=llmock_server.base_url("openai"), openai_api_key="x",
                             image_model=model)  # fmt: skip
    with pytest.raises(NotAnImageError, match=r"the image API returned SVG/non-image data \(\d+ bytes"):
        OpenAIImageGenerator(settings).generate("a cat")


def test_content_policy_refusal_is_its_own_error(home: Path, image_api: ImageAPI):
    image_api.script = [(400, MODERATION_BLOCKED)]
    settings = load_settings(home=home, openai_base_url=image_api.base_url, openai_api_key="x")
    with pytest.raises(ContentPolicyError, match="content policy .*moderation_blocked.*--prompt"):
        OpenAIImageGenerator(settings).generate("something refused")


# -- the imagegen job --------------------------------------------------------------------------------------


def test_png_is_generated_stored_and_attached(api_rt: Runtime, image_api: ImageAPI, image_done):
    post_id = insert_post(api_rt)
    row = request_image(api_rt, post_id, backend="openai")
    assert row["id"] == f"imagegen-{post_id}" and row["queue"] == "imagegen"
    drain(api_rt, "imagegen")

    job = get_job(api_rt.store, row["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert image_api.requests[0]["body"]["prompt"] == "a red fox in snow"  # the rewrite's image prompt
    media = api_rt.store.query("SELECT * FROM media WHERE post_id = ?", (post_id,))
    assert len(media) == 1
    m = media[0]
    assert (m["origin"], m["kind"], m["backend"], m["mime"], m["width"], m["height"]) == (
        "generated", "photo", "openai", "image/png", 64, 48,
    )  # fmt: skip
    path = api_rt.settings.media_dir / m["path"]
    assert path.read_bytes() == make_png()
    assert m["path"] == f"{m['sha256'][:2]}/{m['sha256']}.png"
    assert image_done == [(post_id, True)]
    assert events(api_rt, row["id"])[-4:] == ["attempt", "image_request", "image_attached", "succeeded"]
    assert json.loads(job["result"])["image_id"] == m["id"]


def test_new_image_replaces_the_earlier_generated_one(api_rt: Runtime, image_api: ImageAPI, image_done):
    post_id = insert_post(api_rt)
    request_image(api_rt, post_id, backend="openai")
    drain(api_rt, "imagegen")
    first = api_rt.store.one("SELECT * FROM media WHERE post_id = ?", (post_id,))
    assert first is not None
    image_api.default = (200, ImageAPI.png_answer(make_png(colour="#0044ff")))
    second = request_image(api_rt, post_id, prompt="a blue fox", backend="openai")
    assert second["id"] == f"imagegen-{post_id}-2"
    drain(api_rt, "imagegen")

    media = api_rt.store.query("SELECT * FROM media WHERE post_id = ?", (post_id,))
    assert len(media) == 1 and media[0]["id"] != first["id"] and media[0]["prompt"] == "a blue fox"
    assert not (api_rt.settings.media_dir / first["path"]).exists()  # the replaced file is gone
    assert api_rt.store.scalar("SELECT COUNT(*) FROM media WHERE id = ?", (first["id"],)) == 0
    assert "image_deleted" in events(api_rt, second["id"])
    assert image_done == [(post_id, True), (post_id, True)]


def test_three_failed_attempts_then_failed_with_the_reason(api_rt: Runtime, image_api: ImageAPI, image_done):
    post_id = insert_post(api_rt)
    image_api.default = (500, SERVER_ERROR)
    row = request_image(api_rt, post_id, backend="openai")
    drain(api_rt, "imagegen", timeout=60)

    job = get_job(api_rt.store, row["id"])
    assert job["status"] == "failed"
    assert job["attempts"] == 3 == job["max_attempts"]
    assert "the image API is unavailable (HTTP 500" in job["error"]
    assert len(image_api.requests) == 3  # one HTTP request per attempt: the SDK does not retry on its own
    log = job_events(api_rt.store, row["id"])
    assert [e["event"] for e in log].count("attempt") == 3
    failures = [e["message"] for e in log if e["event"] == "attempt_failed"]
    assert len(failures) == 3 and failures[-1].endswith("no attempts left")
    assert [e["event"] for e in log].count("retrying") == 2
    assert api_rt.store.scalar("SELECT COUNT(*) FROM media") == 0
    assert image_done == [(post_id, False)]  # told once, after the last attempt


def test_a_transient_failure_is_retried_and_then_succeeds(api_rt: Runtime, image_api: ImageAPI, image_done):
    post_id = insert_post(api_rt)
    image_api.script = [(503, SERVER_ERROR)]
    row = request_image(api_rt, post_id, backend="openai")
    drain(api_rt, "imagegen", timeout=60)
    job = get_job(api_rt.store, row["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert image_done == [(post_id, True)]


def test_content_policy_refusal_fails_at_once(api_rt: Runtime, image_api: ImageAPI, image_done):
    post_id = insert_post(api_rt)
    image_api.default = (400, MODERATION_BLOCKED)
    row = request_image(api_rt, post_id, backend="openai")
    drain(api_rt, "imagegen", timeout=60)

    job = get_job(api_rt.store, row["id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "content policy" in job["error"] and "moderation_blocked" in job["error"]
    assert len(image_api.requests) == 1
    assert "retrying" not in events(api_rt, row["id"])
    assert image_done == [(post_id, False)]


def test_svg_answer_fails_the_job_without_retrying(home: Path, llmock_server: LLMockServer, image_done):
    rt = runtime_for(home, llmock_server.base_url("openai"))
    try:
        post_id = insert_post(rt)
        row = request_image(rt, post_id, backend="openai")
        drain(rt, "imagegen", timeout=60)
        job = get_job(rt.store, row["id"])
        assert job["status"] == "failed" and job["attempts"] == 1
        assert "SVG/non-image data" in job["error"]
        assert rt.store.scalar("SELECT COUNT(*) FROM media") == 0
        assert not any(p.is_file() for p in rt.settings.media_dir.rglob("*")) if rt.settings.media_dir.exists() \
            else True  # fmt: skip
        assert image_done == [(post_id, False)]
    finally:
        rt.close()


def test_openai_without_a_prompt_or_key_is_refused_before_queueing(home: Path, image_api: ImageAPI):
    from contentq.errors import ConfigError
    from contentq.integrations.image_generator import ImageFatalError

    rt = runtime_for(home, image_api.base_url)
    try:
        post_id = insert_post(rt, image_prompt=None)
        with pytest.raises(ImageFatalError, match=f"post {post_id} has no image prompt.*--prompt"):
            request_image(rt, post_id, backend="openai")
    finally:
        rt.close()
    no_key = Runtime(Settings(home=home))
    try:
        post_id = insert_post(no_key)
        with pytest.raises(ConfigError, match="CONTENTQ_OPENAI_API_KEY"):
            request_image(no_key, post_id, backend="openai")
        assert no_key.store.scalar("SELECT COUNT(*) FROM jobs") == 0
    finally:
        no_key.close()
