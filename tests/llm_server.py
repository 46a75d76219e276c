"""A tiny OpenAI chat-completions server on loopback for answers llmock cannot give: an HTML body with
HTTP 200, a Retry-After of 1e12, a lone surrogate, a `message.refusal`, an error echoing the API key, and
the usage block of a provider with a prompt cache (`prompt_tokens_details.cached_tokens`, `PromptCache`)."""

from __future__ import annotations

import json
import math
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


class PromptCache:
    """OpenAI's prompt caching as documented: a request whose prompt is 1024 tokens or more reuses the longest
    exact prefix it shares with an earlier request (same `prompt_cache_key`, if given), counted in steps of 128
    tokens, and reports it as `usage.prompt_tokens_details.cached_tokens`. A token is taken as 4 bytes of the
    rendered prompt (each message as `<|role|>content`), so the figures are deterministic."""

    MIN_TOKENS = 1024
    STEP = 128

    def __init__(self) -> None:
        self.seen: dict[str | None, list[bytes]] = {}

    @staticmethod
    def render(messages: list[dict[str, Any]]) -> bytes:
        return "".join(f"<|{m.get('role')}|>{m.get('content') or ''}" for m in messages).encode()

    def usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        prompt = self.render(body.get("messages") or [])
        tokens = math.ceil(len(prompt) / 4)
        earlier = self.seen.setdefault(body.get("prompt_cache_key"), [])
        shared = max((_common_prefix(prompt, old) for old in earlier), default=0) // 4
        cached = shared // self.STEP * self.STEP if tokens >= self.MIN_TOKENS and shared >= self.MIN_TOKENS else 0
        earlier.append(prompt)
        return {
            "prompt_tokens": tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        }


def _common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
        self.prompt_cache: PromptCache | None = None
        """Set: a chat completion's usage block is the prompt cache's (cached tokens of a shared prefix)."""
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
                if owner.prompt_cache is not None and canned.status == 200 and body is not None:
                    canned = owner.with_cache_usage(canned, body)
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

    def with_cache_usage(self, canned: Canned, request: dict[str, Any]) -> Canned:
        assert self.prompt_cache is not None
        answer = json.loads(canned.body)
        content = answer["choices"][0]["message"].get("content") or ""
        answer["usage"] = self.prompt_cache.usage(request, math.ceil(len(content.encode()) / 4))
        return Canned(canned.status, json.dumps(answer).encode(), canned.headers)

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
