"""A tiny OpenAI chat-completions server on loopback for answers llmock cannot give: an HTML body with
HTTP 200, a Retry-After of 1e12, a lone surrogate, a `message.refusal`, an error echoing the API key."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Canned:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


def completion(content: str | None = None, *, refusal: str | None = None, raw: bool = False) -> bytes:
    """A chat.completion body. `raw` puts `content` in as JSON text as it is (e.g. with a lone \\ud800)."""
    message: dict[str, Any] = {"role": "assistant", "content": "@@CONTENT@@" if raw else content, "refusal": refusal}
    body = {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
    }
    text = json.dumps(body)
    if raw:
        text = text.replace('"@@CONTENT@@"', content or "null")
    return text.encode()


def error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Canned:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}}).encode()
    return Canned(status, body, {"Content-Type": "application/json", **(headers or {})})


class LocalLLM:
    """Answers queued `Canned` responses in order (the last one repeats); records every request."""

    def __init__(self) -> None:
        self.answers: list[Canned] = []
        self.requests: list[Seen] = []
        self.echo_auth = False
        """Answer 401 "Incorrect API key provided: <what was sent>" (as OpenAI does) to every request."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                owner.requests.append(Seen(self.path, dict(self.headers.items()), body))
                if owner.echo_auth:
                    sent = self.headers.get("Authorization", "")
                    canned = error(401, f"Incorrect API key provided: {sent.split(' ', 1)[-1]}. Sent: {sent}")
                elif owner.answers:
                    canned = owner.answers.pop(0) if len(owner.answers) > 1 else owner.answers[0]
                else:
                    canned = Canned(404, b'{"error": {"message": "nothing scripted"}}')
                self.send_response(canned.status)
                for key, value in canned.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            do_GET = _answer  # noqa: N815
            do_POST = _answer  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def queue(self, *answers: Canned | bytes) -> None:
        self.answers.extend(a if isinstance(a, Canned) else Canned(200, a) for a in answers)

    @property
    def chat_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]


@pytest.fixture
def local_llm() -> Iterator[LocalLLM]:
    server = LocalLLM()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
