"""The LLM rewriter: prompt → structured output → validated Telegram HTML, with usage recorded per call."""

from __future__ import annotations

import time
from collections.abc import Callable

from contentq.content.html import collect_links, html_to_text
from contentq.errors import FatalJobError
from contentq.integrations.llm import (
    MIN_TRY_S,
    Completion,
    ContextTooLongError,
    LLMClient,
    LLMUnavailableError,
    MalformedResponseError,
    json_schema_format,
)
from contentq.redact import redact
from contentq.rewrite.base import Reporter, RewriteResult, RewriteTask
from contentq.rewrite.checks import check_answer, checked_html
from contentq.rewrite.finalize import Finalized, finalize_html
from contentq.rewrite.output import (
    OUTPUT_SCHEMA,
    SCHEMA_NAME,
    InvalidOutputError,
    ModelOutput,
    ModelRefusalError,
    parse_output,
)
from contentq.rewrite.prompt import PromptInput, answer_echo, build_messages, cache_key, correction_message
from contentq.rewrite.usage import record_usage
from contentq.routes import Route
from contentq.runtime.stopping import checkpoint
from contentq.settings import Settings
from contentq.store import Store

OUTPUT_ATTEMPTS = 3
"""Model calls per rewrite when the answer is not valid JSON of the schema."""

RAW_KEPT = 2000
"""Characters of an invalid answer kept in the job log."""


class InvalidModelOutputError(FatalJobError):
    """The model gave no usable answer in OUTPUT_ATTEMPTS tries."""

    def __init__(self, message: str, raw: str | None) -> None:
        super().__init__(message)
        self.raw = raw


BudgetGate = Callable[[Route], None]
"""Called before every model call of a route; raises (rewrite/budget.BudgetExceeded) when its budget is spent."""


class LLMRewriter:
    name = "llm"

    def __init__(self, client: LLMClient, settings: Settings, store: Store, *, gate: BudgetGate | None = None) -> None:
        self.client = client
        self.settings = settings
        self.store = store
        self.gate = gate

    def messages_for(self, task: RewriteTask, reporter: Reporter) -> list[dict[str, object]]:
        """The prompt; style examples are dropped first when the request would not fit the context window."""
        data = PromptInput(task.route, task.donor_html, task.limit, task.has_media, task.style_examples)
        messages = build_messages(data)
        fits, needed = self.client.fits(messages)
        if not fits and task.style_examples:
            shorter = build_messages(data, with_examples=False)
            fits_without, needed_without = self.client.fits(shorter)
            if fits_without:
                reporter.log(
                    "prompt_shortened",
                    f"style examples left out: ~{needed} tokens do not fit the context window, ~{needed_without} do",
                    level="warning",
                )
                return shorter
        return messages

    def rewrite(self, task: RewriteTask, reporter: Reporter) -> RewriteResult:
        if not html_to_text(task.donor_html).strip():
            reporter.log("no_text", "the post has no text (media only): nothing to send to the model")
            return RewriteResult(rewriter=self.name, attempts=0)
        return self.complete(task, self.messages_for(task, reporter), reporter)

    def rewrite_answered(
        self, task: RewriteTask, messages: list[dict[str, object]], answer: Completion, reporter: Reporter
    ) -> RewriteResult:
        """A rewrite whose first answer came from a batch (contentq.rewrite.batch): validated as a direct answer;
        an invalid one is corrected by direct calls, as it would be after a direct call."""
        return self.complete(task, messages, reporter, answered=answer)

    def complete(
        self,
        task: RewriteTask,
        messages: list[dict[str, object]],
        reporter: Reporter,
        *,
        answered: Completion | None = None,
    ) -> RewriteResult:
        """Ask the model with `messages` until its answer is valid (OUTPUT_ATTEMPTS tries, each invalid answer
        corrected), then validate the text for the route; shared by rewrites and rule-written posts. `answered`
        is the first try's answer when a batch line gave it (recorded at the batch price)."""
        result = RewriteResult(rewriter=self.name, attempts=0)
        response_format = json_schema_format(SCHEMA_NAME, OUTPUT_SCHEMA)
        for attempt in range(1, OUTPUT_ATTEMPTS + 1):
            checkpoint(f"before model call {attempt}")
            if self.gate is not None and not (attempt == 1 and answered is not None):
                # Over budget: BudgetExceeded (a wait, or the clean rewriter instead). A batch line's answer is
                # paid for already: the gate was passed when the post joined the batch.
                self.gate(task.route)
            result.attempts = attempt
            if attempt > 1 and task.deadline is not None and task.deadline - time.monotonic() < MIN_TRY_S:
                raise LLMUnavailableError(
                    f"the model returned invalid output {attempt - 1} times and the job has no time left for "
                    "another try (CONTENTQ_REWRITE_TIMEOUT); the job is retried"
                )
            batched = attempt == 1 and answered is not None
            try:
                completion = answered if batched and answered is not None else self.client.complete(
                    messages, response_format=response_format, log=reporter, deadline=task.deadline,
                    on_failure=lambda error: self._failed_call(task, error), cache_key=cache_key(task.route),
                )  # fmt: skip
            except MalformedResponseError as exc:
                # Not a model answer at all (an HTML page, broken JSON, invalid Unicode): ask the same again.
                self._invalid(task, reporter, attempt, exc, None)
                continue
            result.tokens_in += completion.tokens_in
            result.tokens_out += completion.tokens_out
            result.cost += record_usage(
                self.store, self.settings, post_id=task.post_id, route=task.route.name, job_id=task.job_id,
                model=completion.model, tokens_in=completion.tokens_in, tokens_out=completion.tokens_out,
                batch=batched, tokens_cached=completion.tokens_cached,
            )  # fmt: skip
            result.tokens_cached += completion.tokens_cached
            if completion.refusal:
                raise ModelRefusalError(f"the model refused: {completion.refusal.strip()[:500]}")
            try:
                if completion.finish_reason == "length":
                    raise InvalidOutputError(
                        f"the answer was cut at {self.settings.openai_max_output_tokens} tokens "
                        "(CONTENTQ_OPENAI_MAX_OUTPUT_TOKENS)"
                    )
                output = parse_output(completion.content)
                final = None if output.skip else self._finalize(task, output)
                if final is not None and not final.html.strip() and not task.has_media:
                    raise InvalidOutputError("nothing is left of the text once invalid links are removed")
            except InvalidOutputError as exc:
                self._invalid(task, reporter, attempt, exc, completion.content)
                messages = [*messages, answer_echo(completion.content), correction_message(str(exc), exc.hint)]
                continue
            if final is None:
                result.skip_reason = output.skip_reason or "the model judged the post unfit (no reason given)"
                return result
            return self._result(output, final, result, reporter)
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed_call(self, task: RewriteTask, error: str) -> None:
        """A request that got no answer counts in the usage (`contentq usage`, `stats`): tokens 0, its error."""
        record_usage(
            self.store, self.settings, post_id=task.post_id, route=task.route.name, job_id=task.job_id,
            model=self.client.model, tokens_in=0, tokens_out=0, error=redact(error),
        )  # fmt: skip

    def _invalid(
        self, task: RewriteTask, reporter: Reporter, attempt: int, exc: Exception, content: str | None
    ) -> None:
        """Log an invalid answer; tell the admin a retry follows, or raise after the last try."""
        raw = (content or "")[:RAW_KEPT]
        reporter.log("invalid_output", f"attempt {attempt}/{OUTPUT_ATTEMPTS}: {exc}", level="warning", raw_output=raw)
        if attempt == OUTPUT_ATTEMPTS:
            raise InvalidModelOutputError(
                f"the model returned invalid output {OUTPUT_ATTEMPTS} times, last: {exc}", raw
            ) from None
        reporter.notify(
            f"rewrite-invalid-output:{task.post_id}:{attempt + 1}",
            f"retrying rewrite of post {task.post_id}: the model returned invalid output "
            f"(attempt {attempt + 1}/{OUTPUT_ATTEMPTS})",
        )

    def _finalize(self, task: RewriteTask, output: ModelOutput) -> Finalized:
        """The answer's text checked (InvalidOutputError: asked again), then its links filtered and cut."""
        html = checked_html(output.text)
        check_answer(task.donor_html, html, task.route.llm)
        permitted = [*collect_links(task.donor_html), *task.route.allowed_links]
        return finalize_html(html, permitted_links=permitted, limit=task.cut_limit)

    def _result(
        self, output: ModelOutput, final: Finalized, result: RewriteResult, reporter: Reporter
    ) -> RewriteResult:
        for note in final.notes:
            reporter.log("validated", note, level="warning")
        result.html = final.html
        result.truncated = final.truncated
        result.notes = final.notes
        result.title = output.title
        result.image_prompt = output.image_prompt
        return result


__all__ = ["ContextTooLongError", "InvalidModelOutputError", "LLMRewriter", "ModelRefusalError", "OUTPUT_ATTEMPTS"]
