"""The OpenAI images API (`POST /v1/images/generations`) through the OpenAI SDK, on any compatible base_url.

GPT image models always answer in base64 and take no `response_format`; DALL·E models and most compatible
servers are asked for `b64_json`. A `data:` URL is decoded and an http(s) URL downloaded, for servers that
ignore the request. Whatever arrives is checked with Pillow: an SVG, HTML or JSON answer is refused.

One HTTP request per job attempt (the SDK's own retries are off): the imagegen queue's attempts are the
retries, each one logged on the job. Content-policy refusals and other 4xx answers are fatal.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx
import openai

from contentq.integrations.image_generator import (
    ContentPolicyError,
    GeneratedImage,
    ImageError,
    ImageFatalError,
    NotAnImageError,
    verify_raster,
)
from contentq.integrations.openai_client import openai_client
from contentq.settings import Settings

CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
"""`error.code` values OpenAI uses when its safety system refuses an image prompt (HTTP 400)."""

MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
"""Largest image downloaded from a URL answer."""


def is_gpt_image_model(model: str) -> bool:
    return model.startswith(("gpt-image", "chatgpt-image"))


def request_params(settings: Settings, prompt: str) -> dict[str, Any]:
    """The images.generate arguments for the configured model (quality names differ between model families)."""
    model = settings.image_model
    params: dict[str, Any] = {"model": model, "prompt": prompt, "n": 1, "size": settings.image_size}
    quality = settings.image_quality
    if is_gpt_image_model(model):
        params["quality"] = quality  # low | medium | high | auto; the answer is always b64_json
        return params
    if model == "dall-e-3":
        params["quality"] = "hd" if quality in ("high", "hd") else "standard"
    elif model != "dall-e-2" and quality:
        params["quality"] = quality
    params["response_format"] = "b64_json"
    return params


def is_content_policy_refusal(exc: openai.APIStatusError) -> bool:
    if exc.code in CONTENT_POLICY_CODES:
        return True
    text = str(exc.message).lower()
    return exc.status_code == 400 and ("safety system" in text or "content policy" in text)


def _describe(exc: openai.APIStatusError) -> str:
    code = f" {exc.code}" if exc.code else ""
    return f"HTTP {exc.status_code}{code}: {exc.message}"


def translate_error(exc: openai.OpenAIError) -> ImageError:
    """SDK errors as contentq errors: fatal when retrying cannot help, plain ImageError when it may."""
    if isinstance(exc, openai.APIStatusError):
        if is_content_policy_refusal(exc):
            return ContentPolicyError(
                f"the image API refused the prompt under its content policy ({_describe(exc)}); "
                "change it with `contentq images generate POST_ID --prompt TEXT`, or use --backend card"
            )
        status = exc.status_code
        if status == 429 and exc.code == "insufficient_quota":
            return ImageFatalError(f"the image API account is out of quota ({_describe(exc)}); check billing")
        if status in (408, 409, 429) or status >= 500:
            return ImageError(f"the image API is unavailable ({_describe(exc)})")
        hint = {
            401: "check CONTENTQ_OPENAI_API_KEY",
            403: "the API key may not use this model; check CONTENTQ_OPENAI_API_KEY and CONTENTQ_IMAGE_MODEL",
            404: "check CONTENTQ_IMAGE_MODEL and CONTENTQ_OPENAI_BASE_URL",
        }.get(status, "check CONTENTQ_IMAGE_MODEL, CONTENTQ_IMAGE_SIZE and CONTENTQ_IMAGE_QUALITY")
        return ImageFatalError(f"the image API refused the request ({_describe(exc)}); {hint}")
    if isinstance(exc, openai.APITimeoutError):
        return ImageError("the image API timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ImageError(f"cannot reach the image API ({exc.__cause__ or exc})")
    return ImageError(f"the image API failed: {type(exc).__name__}: {exc}")


class OpenAIImageGenerator:
    """The `openai` backend."""

    name = "openai"

    def __init__(self, settings: Settings, *, client: openai.OpenAI | None = None) -> None:
        self.settings = settings
        if client is None:
            client = openai_client(
                settings,
                # Image generation is slow; end the HTTP call before the job's own timeout kills it.
                timeout=max(settings.openai_timeout, settings.imagegen_timeout * 0.9),
                missing_key="no OpenAI API key for images: set CONTENTQ_OPENAI_API_KEY (or CONTENTQ_OPENAI_BASE_URL "
                'for a local OpenAI-compatible server), or use the card backend (image_backend = "card")',
            )
        self.client = client

    def close(self) -> None:
        self.client.close()

    def generate(self, text: str) -> GeneratedImage:
        params = request_params(self.settings, text)
        try:
            response = self.client.images.generate(**params)
        except openai.OpenAIError as exc:
            raise translate_error(exc) from exc
        items = response.data or []
        if not items:
            raise ImageError("the image API answered without an image (empty data)")
        item = items[0]
        data = self._bytes_of(item.b64_json, item.url)
        info = verify_raster(data)
        usage = getattr(response, "usage", None)
        return GeneratedImage(
            data=data,
            mime=info.mime,
            width=info.width,
            height=info.height,
            backend=self.name,
            model=params["model"],
            revised_prompt=item.revised_prompt,
            details={
                "size": params["size"],
                "quality": params.get("quality"),
                "usage": usage.model_dump() if usage is not None and hasattr(usage, "model_dump") else None,
            },
        )

    def _bytes_of(self, b64: str | None, url: str | None) -> bytes:
        if b64:
            return _decode_b64(b64)
        if url and url.startswith("data:"):
            header, _, payload = url.partition(",")
            if ";base64" not in header:
                raise NotAnImageError(f"the image API returned a non-base64 data URL ({header[:60]})")
            return _decode_b64(payload)
        if url and url.startswith(("http://", "https://")):
            return self._download(url)
        raise ImageError("the image API answered with neither b64_json nor a URL")

    def _download(self, url: str) -> bytes:
        try:
            with httpx.stream("GET", url, timeout=self.settings.openai_timeout, follow_redirects=True) as resp:
                resp.raise_for_status()
                chunks, total = [], 0
                for chunk in resp.iter_bytes():
                    total += len(chunk)
                    if total > MAX_DOWNLOAD_BYTES:
                        raise NotAnImageError(f"the image at the API's URL is over {MAX_DOWNLOAD_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot download the generated image ({type(exc).__name__}: {exc})") from None


def _decode_b64(payload: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise NotAnImageError(f"the image API returned invalid base64 ({exc})") from None
