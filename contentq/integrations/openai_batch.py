"""The OpenAI Batch API through the OpenAI SDK: upload a JSONL file (purpose "batch"), create a batch over it,
follow its status, read its output and error files, cancel it.

Each call is retried in place (tenacity) on 429, 5xx, timeouts and connection errors; what still fails is
`BatchUnavailableError` (worth another try later), a refused request `BatchRefusedError` (fatal: a key without
access to batches, an endpoint that has none, a file the provider rejects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import openai
import tenacity

from contentq.errors import FatalJobError, RetryableError
from contentq.integrations.llm import describe_error, is_transient
from contentq.integrations.openai_client import openai_client
from contentq.settings import Settings

ENDPOINT: Final[Literal["/v1/chat/completions"]] = "/v1/chat/completions"
"""The endpoint every line of a contentq batch calls."""

COMPLETION_WINDOW: Final[Literal["24h"]] = "24h"
"""The only completion window OpenAI offers."""

ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
"""A batch's final statuses."""

T = TypeVar("T")


class BatchUnavailableError(RetryableError):
    """The Batch API did not answer (429, 5xx, timeouts) on every try of one call."""


class BatchRefusedError(FatalJobError):
    """The Batch API refused the request (400, 401, 403, 404): retrying cannot help."""


@dataclass
class BatchView:
    """What contentq reads of a batch object."""

    id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = field(default_factory=list)
    total: int = 0
    completed: int = 0
    failed: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def describe(self) -> str:
        counts = f"{self.completed}/{self.total} done" + (f", {self.failed} failed" if self.failed else "")
        why = f": {'; '.join(self.errors)}" if self.errors else ""
        return f"{self.status}, {counts}{why}"


def view_of(batch: Any) -> BatchView:
    counts = getattr(batch, "request_counts", None)
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    return BatchView(
        id=batch.id,
        status=batch.status,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        errors=[
            (f"line {e.line}: " if e.line is not None else "") + f"{e.code or 'error'}: {e.message or ''}".strip()
            for e in errors
        ][:20],
        total=counts.total if counts else 0,
        completed=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        metadata=dict(batch.metadata or {}),
    )


class BatchClient:
    """Files and Batches of any OpenAI-compatible endpoint (CONTENTQ_OPENAI_BASE_URL) that has them."""

    def __init__(self, settings: Settings, *, client: openai.OpenAI | None = None) -> None:
        self.settings = settings
        self.client = client or openai_client(
            settings,
            timeout=max(settings.openai_timeout, 60.0),  # an upload of many lines takes longer than a chat call
            missing_key="no OpenAI API key: set CONTENTQ_OPENAI_API_KEY (or CONTENTQ_OPENAI_BASE_URL), or set the "
            'route\'s rewrite_mode = "direct"',
        )

    def close(self) -> None:
        self.client.close()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        attempts = max(1, self.settings.openai_call_attempts)
        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception(is_transient),
                wait=tenacity.wait_exponential(multiplier=1, max=8),
                stop=tenacity.stop_after_attempt(attempts),
                reraise=True,
            ):
                with attempt:
                    return fn()
        except openai.APIStatusError as exc:
            if is_transient(exc):
                raise BatchUnavailableError(f"{what}: {describe_error(exc)} ({attempts} tries)") from exc
            hint = {
                401: "check CONTENTQ_OPENAI_API_KEY",
                403: "the API key may not use the Batch API",
                404: 'the endpoint has no Batch API (CONTENTQ_OPENAI_BASE_URL); use rewrite_mode = "direct"',
            }.get(exc.status_code, "the request was refused")
            raise BatchRefusedError(f"{what}: {describe_error(exc)}; {hint}") from exc
        except openai.APIConnectionError as exc:
            raise BatchUnavailableError(f"{what}: {describe_error(exc)} ({attempts} tries)") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def submit(self, jsonl: bytes, *, metadata: dict[str, str]) -> tuple[str, BatchView]:
        """Upload the lines and create the batch; (the input file's id, the batch)."""
        uploaded = self._call(
            "uploading the batch file",
            lambda: self.client.files.create(file=("rewrites.jsonl", jsonl, "application/jsonl"), purpose="batch"),
        )
        return uploaded.id, self.create(uploaded.id, metadata=metadata)

    def create(self, input_file_id: str, *, metadata: dict[str, str]) -> BatchView:
        batch = self._call(
            "creating the batch",
            lambda: self.client.batches.create(
                input_file_id=input_file_id, endpoint=ENDPOINT, completion_window=COMPLETION_WINDOW, metadata=metadata
            ),
        )
        return view_of(batch)

    def find(self, key: str, value: str, *, pages: int = 5) -> BatchView | None:
        """The newest batch whose metadata has `key` = `value` (a submission whose answer was lost)."""
        page = self._call("listing batches", lambda: self.client.batches.list(limit=100))
        for _ in range(pages):
            for batch in page.data:
                if (batch.metadata or {}).get(key) == value:
                    return view_of(batch)
            if not page.has_next_page():
                return None
            page = self._call("listing batches", page.get_next_page)
        return None

    def retrieve(self, batch_id: str) -> BatchView:
        return view_of(self._call("reading the batch's status", lambda: self.client.batches.retrieve(batch_id)))

    def cancel(self, batch_id: str) -> BatchView:
        return view_of(self._call("cancelling the batch", lambda: self.client.batches.cancel(batch_id)))

    def download(self, file_id: str) -> str:
        """A result file's text (JSONL)."""
        return self._call(f"downloading file {file_id}", lambda: self.client.files.content(file_id)).text
