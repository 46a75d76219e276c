"""What the model must answer: a JSON object (Structured Outputs schema), validated with pydantic."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from contentq.errors import FatalJobError

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {
            "type": "string",
            "description": "The rewritten post as Telegram HTML. Empty only when skip is true.",
        },
        "title": {"type": ["string", "null"], "description": "A short headline, or null."},
        "image_prompt": {
            "type": ["string", "null"],
            "description": "One sentence describing an illustration for the post (no text in the image), or null.",
        },
        "skip": {
            "type": "boolean",
            "description": "true when the post must not be published: an advertisement, or off-topic.",
        },
        "skip_reason": {"type": ["string", "null"], "description": "Why the post is skipped, or null."},
    },
    "required": ["text", "title", "image_prompt", "skip", "skip_reason"],
    "additionalProperties": False,
}
"""Strict-mode compatible: every field required, optional ones nullable, no extra keys."""

SCHEMA_NAME = "rewritten_post"


class InvalidOutputError(FatalJobError):
    """The model's answer is not JSON, does not follow the schema, or its text fails a check of
    rewrite/checks.py (the rewriter asks again; fatal once it escapes). `hint` tells the model how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class ModelRefusalError(FatalJobError):
    """The model refused the task (the SDK's `message.refusal`, or a `refusal` field in its JSON answer)."""


class ModelOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = ""
    title: str | None = None
    image_prompt: str | None = None
    skip: bool = False
    skip_reason: str | None = None

    @field_validator("title", "image_prompt", "skip_reason")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_text(self) -> ModelOutput:
        if not self.skip and not self.text.strip():
            raise ValueError("text is empty and skip is false")
        return self


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_output(content: str | None) -> ModelOutput:
    """The model's answer as a ModelOutput, or InvalidOutputError saying what is wrong."""
    if content is None or not content.strip():
        raise InvalidOutputError("the answer is empty")
    fenced = _FENCE.match(content)
    raw = fenced.group(1) if fenced else content
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidOutputError(f"the answer is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidOutputError(f"the answer is JSON but not an object (got {type(data).__name__})")
    refusal = data.get("refusal")
    if isinstance(refusal, str) and refusal.strip():  # servers without Structured Outputs refuse in the JSON
        raise ModelRefusalError(f"the model refused: {refusal.strip()[:500]}")
    missing = [key for key in OUTPUT_SCHEMA["required"] if key not in data]
    if missing:  # a partial answer is not accepted with defaults for what the model left out
        raise InvalidOutputError(f"the answer does not follow the schema (missing: {', '.join(missing)})")
    try:
        return ModelOutput.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise InvalidOutputError(f"the answer does not follow the schema ({problems})") from None
