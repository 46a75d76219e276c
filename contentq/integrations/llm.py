"""The LLM behind the OpenAI SDK: any OpenAI-compatible endpoint, with retries and a circuit breaker.

One `LLMClient` per process (`runtime.service("llm", build_llm_client)`). A call is retried in place on
429, 5xx, timeouts and connection errors (tenacity, honouring `Retry-After`); a wait longer than
`openai_retry_after_max` is not slept through but raised as `RateLimitedError` so the job can be
re-enqueued. Every HTTP attempt goes through a pybreaker circuit breaker whose state lives in Redis, so
all workers see one breaker: once open, calls fail fast with `BreakerOpenError` (carrying the cool-down)
instead of hammering a provider that is down.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import openai
import pybreaker
import redis
import tenacity

from contentq.errors import ConfigError, ContentqError
from contentq.settings import Settings

if TYPE_CHECKING:
    from contentq.runtime.context import Runtime

BREAKER_NAMESPACE = "contentq:llm"
"""Redis key prefix of the shared breaker: <prefix>:pybreaker:state, :fail_counter, :opened_at."""

LOG_CHARS = 4000
"""Longest piece of a prompt or an answer copied into the job log."""


class EventLog(Protocol):
    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...


class LLMError(ContentqError):
    """The LLM endpoint could not give an answer."""


class LLMFatalError(LLMError):
    """Retrying cannot help: the request was refused (400, 401, 403, 404, 422)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def is_auth(self) -> bool:
        return self.status in (401, 403)


class ContextTooLongError(LLMFatalError):
    """The request does not fit the model's context window."""


class LLMUnavailableError(LLMError):
    """429, 5xx, timeouts or connection errors on every try of one call: worth another go later."""


class LLMWaitError(LLMError):
    """The endpoint must not be called for `delay` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class RateLimitedError(LLMWaitError):
    """429 with a Retry-After longer than contentq sleeps through."""


class BreakerOpenError(LLMWaitError):
    """The circuit breaker is open after repeated failures."""


@dataclass
class Completion:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    model: str
    tokens_in: int
    tokens_out: int
    usage_estimated: bool = False


def estimate_tokens(text: str) -> int:
    """A deliberately high token count: UTF-8 bytes / 3 (English runs ~4 bytes a token, Cyrillic ~4–5)."""
    return math.ceil(len(text.encode("utf-8")) / 3)


def estimate_messages(messages: Sequence[dict[str, Any]]) -> int:
    """Tokens a chat request's messages take, estimated high, with the per-message overhead."""
    return 3 + sum(4 + estimate_tokens(str(m.get("content") or "")) for m in messages)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying (and counted by the circuit breaker)."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait the server asked for (retry-after-ms, or retry-after in seconds), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        code = f" {exc.code}" if exc.code else ""
        return f"HTTP {exc.status_code}{code}: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _is_context_error(exc: openai.APIStatusError) -> bool:
    text = f"{exc.code or ''} {exc.message}".lower()
    return "context_length_exceeded" in text or "maximum context length" in text


def _fatal(exc: openai.APIStatusError, model: str) -> LLMFatalError:
    reason = _describe(exc)
    if _is_context_error(exc):
        return ContextTooLongError(
            f"the request is longer than the context window of {model} ({reason}); "
            "shorten the route's prompt or lower style_examples",
            status=exc.status_code, code=exc.code,
        )  # fmt: skip
    hint = {
        401: "check CONTENTQ_OPENAI_API_KEY",
        403: "the API key may not use this model or endpoint; check CONTENTQ_OPENAI_API_KEY and CONTENTQ_OPENAI_MODEL",
        404: "check CONTENTQ_OPENAI_MODEL and CONTENTQ_OPENAI_BASE_URL",
    }.get(exc.status_code, "the request was refused; see the job log for what was sent")
    return LLMFatalError(f"the LLM endpoint refused the request ({reason}); {hint}",
                         status=exc.status_code, code=exc.code)  # fmt: skip


# -- the circuit breaker ---------------------------------------------------------------------------


def build_breaker(settings: Settings, conn: redis.Redis) -> pybreaker.CircuitBreaker:
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, conn, namespace=BREAKER_NAMESPACE)
    return pybreaker.CircuitBreaker(
        fail_max=max(1, settings.breaker_fail_max),
        reset_timeout=settings.breaker_reset_timeout,
        state_storage=storage,
        exclude=[lambda exc: not is_transient(exc)],  # a refused request says nothing about the provider's health
        name="llm",
    )


def _key(name: str) -> str:
    return f"{BREAKER_NAMESPACE}:pybreaker:{name}"


class BreakerState(dict[str, Any]):
    """The shared breaker's state: a dict for --json, one readable line for people."""

    def __str__(self) -> str:
        state = self["state"]
        if state == "open":
            wait = self.get("cooldown_s") or 0
            when = f"trial call in {wait:.0f} s" if wait > 0 else "trial call allowed now"
            return f"open after {self['failures']} failures ({when}); rewrite jobs wait instead of failing"
        if state == "half-open":
            return "half-open (a trial call decides)"
        return f"closed ({self['failures']}/{self['fail_max']} recent failures)"


def breaker_state(settings: Settings, conn: redis.Redis) -> BreakerState:
    """Read the shared breaker from Redis without changing it."""
    state, failures, opened_at = conn.mget(_key("state"), _key("fail_counter"), _key("opened_at"))
    name = (state.decode() if isinstance(state, bytes) else str(state)) if state else pybreaker.STATE_CLOSED
    info = BreakerState(
        state=name,
        failures=int(failures or 0),
        fail_max=settings.breaker_fail_max,
        reset_timeout_s=settings.breaker_reset_timeout,
        cooldown_s=None,
    )
    if name == pybreaker.STATE_OPEN and opened_at:
        info["cooldown_s"] = max(0.0, int(opened_at) + settings.breaker_reset_timeout - time.time())
    return info


def breaker_status(rt: Any) -> dict[str, object]:
    """For `contentq queue status`."""
    try:
        return {"llm_breaker": breaker_state(rt.settings, rt.redis)}
    except redis.RedisError as exc:
        return {"llm_breaker": f"unknown ({exc})"}


# -- the client --------------------------------------------------------------------------------------


class LLMClient:
    """Chat completions with structured output against any OpenAI-compatible endpoint."""

    def __init__(self, settings: Settings, conn: redis.Redis, *, client: openai.OpenAI | None = None) -> None:
        self.settings = settings
        self.model = settings.openai_model
        if client is None:
            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
            if not key and not settings.openai_base_url:
                raise ConfigError(
                    "no OpenAI API key: set CONTENTQ_OPENAI_API_KEY (or CONTENTQ_OPENAI_BASE_URL for a local "
                    'OpenAI-compatible server), or use rewriter = "clean" in the route'
                )
            client = openai.OpenAI(
                api_key=key or "not-needed",  # local servers accept any key
                base_url=settings.openai_base_url,
                timeout=settings.openai_timeout,
                max_retries=0,  # retries are ours: they honour Retry-After, feed the breaker and never sleep long
            )
        self.client = client
        self.breaker = build_breaker(settings, conn)
        self._conn = conn

    def close(self) -> None:
        self.client.close()

    # -- breaker -----------------------------------------------------------------------------

    def cooldown_remaining(self) -> float:
        state = breaker_state(self.settings, self._conn)
        return state["cooldown_s"] or 0.0

    def check_breaker(self) -> None:
        """Raise BreakerOpenError while the breaker is open and its cool-down runs."""
        state = breaker_state(self.settings, self._conn)
        if state["state"] == pybreaker.STATE_OPEN and (state["cooldown_s"] or 0) > 0:
            raise BreakerOpenError(
                f"the LLM circuit breaker is open after {state['failures']} failures; "
                f"trying again in {state['cooldown_s']:.0f} s",
                delay=max(1.0, state["cooldown_s"]),
            )

    # -- calls -------------------------------------------------------------------------------

    def fits(self, messages: Sequence[dict[str, Any]]) -> tuple[bool, int]:
        """Whether the request (prompt + room for the answer) fits the context window; and its estimate."""
        needed = estimate_messages(messages) + self.settings.openai_max_output_tokens
        return needed <= self.settings.openai_context_window, needed

    def complete(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        response_format: dict[str, Any] | None = None,
        log: EventLog | None = None,
    ) -> Completion:
        fits, needed = self.fits(messages)
        if not fits:
            raise ContextTooLongError(
                f"the request needs about {needed} tokens (prompt estimated high, plus "
                f"{self.settings.openai_max_output_tokens} for the answer) but the context window of {self.model} "
                f"is {self.settings.openai_context_window} (CONTENTQ_OPENAI_CONTEXT_WINDOW); the post is too long "
                "for this model, or shorten the route's prompt / lower style_examples",
                code="context_length_exceeded",
            )
        self.check_breaker()
        request: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": self.settings.openai_temperature,
            "max_tokens": self.settings.openai_max_output_tokens,
        }
        if response_format is not None:
            request["response_format"] = response_format
        if log is not None:
            log.log(
                "llm_request",
                f"{self.model} via {self.settings.openai_base_url or 'api.openai.com'}, ~{needed} tokens",
                base_url=self.settings.openai_base_url,
                model=self.model,
                temperature=self.settings.openai_temperature,
                messages=[
                    {"role": m.get("role"), "content": str(m.get("content") or "")[:LOG_CHARS]} for m in messages
                ],
            )
        response = self._call_with_retries(request, log)
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice is not None else None
        content = message.content if message is not None else None
        usage = response.usage
        estimated = usage is None or not usage.prompt_tokens
        completion = Completion(
            content=content,
            refusal=getattr(message, "refusal", None),
            finish_reason=choice.finish_reason if choice is not None else None,
            model=response.model or self.model,
            tokens_in=usage.prompt_tokens if usage and usage.prompt_tokens else estimate_messages(messages),
            tokens_out=usage.completion_tokens if usage else estimate_tokens(content or ""),
            usage_estimated=estimated,
        )
        if log is not None:
            log.log(
                "llm_response",
                f"{completion.finish_reason}, {completion.tokens_in} tokens in, {completion.tokens_out} out"
                + (" (input estimated)" if estimated else ""),
                content=(content or "")[:LOG_CHARS],
                refusal=completion.refusal,
                usage={"in": completion.tokens_in, "out": completion.tokens_out, "estimated": estimated},
            )
        return completion

    def _call_with_retries(self, request: dict[str, Any], log: EventLog | None) -> Any:
        attempts = max(1, self.settings.openai_call_attempts)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            asked = retry_after_seconds(exc) if exc is not None else None
            if asked is not None:
                return asked
            return min(8.0, 2.0 ** (state.attempt_number - 1)) * (0.75 + random.random() / 4)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0
            if log is not None and exc is not None:
                log.log(
                    "llm_retry",
                    f"{_describe(exc)}; retrying in {seconds:.1f} s (try {state.attempt_number + 1}/{attempts})",
                    level="warning",
                )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_attempt(attempts),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, request)
        except openai.APIStatusError as exc:
            if is_transient(exc):
                raise LLMUnavailableError(
                    f"the LLM endpoint failed {attempts} times, last with {_describe(exc)}"
                ) from exc
            raise _fatal(exc, self.model) from exc
        except openai.APIConnectionError as exc:
            raise LLMUnavailableError(f"the LLM endpoint failed {attempts} times, last {_describe(exc)}") from exc

    def _attempt(self, request: dict[str, Any]) -> Any:
        """One HTTP request through the breaker."""
        try:
            return self.breaker.call(self.client.chat.completions.create, **request)
        except pybreaker.CircuitBreakerError:
            cooldown = max(1.0, self.cooldown_remaining() or float(self.settings.breaker_reset_timeout))
            raise BreakerOpenError(
                f"the LLM circuit breaker opened after {self.settings.breaker_fail_max} failures; "
                f"trying again in {cooldown:.0f} s",
                delay=cooldown,
            ) from None
        except openai.APIStatusError as exc:
            asked = retry_after_seconds(exc)
            if is_transient(exc) and asked is not None and asked > self.settings.openai_retry_after_max:
                raise RateLimitedError(
                    f"the LLM endpoint asks to wait {asked:.0f} s ({_describe(exc)})", delay=asked
                ) from exc
            raise


def build_llm_client(runtime: Runtime) -> LLMClient:
    return LLMClient(runtime.settings, runtime.redis)


def json_schema_format(name: str, schema: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """`response_format` for Structured Outputs."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}
