"""A tiny OpenAI-compatible images server on loopback (POST /v1/images/generations answers from a script),
for answers llmock cannot give: it returns SVG, which Telegram cannot post."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image


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
