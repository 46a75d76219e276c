"""The LLM behind the OpenAI SDK: any OpenAI-compatible endpoint, with retries and a circuit breaker.

One `LLMClient` per process (`runtime.service("llm", build_llm_client)`). A call is retried in place (tenacity) on
429, 5xx, timeouts and connection errors (honouring a short `Retry-After`); a wait longer than
`openai_retry_after_max` (5 s), or one that would outlast the caller's deadline, is not slept through but
raised as `RateLimitedError` so the job can be re-enqueued for then. Every HTTP attempt goes through a
pybreaker circuit breaker whose state lives in Redis, so all workers see one breaker: once open, calls
fail fast with `BreakerOpenError` (carrying the cool-down) instead of hammering a provider that is down.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import openai
import pybreaker
import redis
import tenacity
from openai.types.chat import ChatCompletion

from contentq.errors import ContentqError, FatalJobError, Reschedule, RetryableError
from contentq.integrations.breakers import (
    LLM_BREAKER_NAMESPACE,
    BreakerState,
    llm_breaker_key,
    llm_breaker_state,
    llm_breaker_status,
)
from contentq.integrations.openai_client import openai_client
from contentq.settings import Settings

if TYPE_CHECKING:
    from contentq.runtime.context import Runtime

BREAKER_NAMESPACE = LLM_BREAKER_NAMESPACE
"""Redis key prefix of the shared breaker: <prefix>:pybreaker:state, :fail_counter, :opened_at."""

MIN_TRY_S = 3.0
"""The least time worth giving one HTTP request: with less left before the deadline, none is started."""

LOG_CHARS = 4000
"""Longest piece of a prompt or an answer copied into the job log."""

RETRY_AFTER_CAP = 3600.0
"""The longest Retry-After honoured. A longer one (99999999999 s would park a post until the year 5195)
is taken as a provider that is down: the shared breaker is opened and the job comes back after this."""


FailedCall = Callable[[str], None]
"""Told of every HTTP request to the endpoint that failed (its description), to count it in the usage."""


class EventLog(Protocol):
    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...


class LLMError(ContentqError):
    """The LLM endpoint could not give an answer."""


class LLMFatalError(LLMError, FatalJobError):
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


class LLMUnavailableError(LLMError, RetryableError):
    """429, 5xx, timeouts or connection errors on every try of one call: worth another go later."""


class LLMWaitError(LLMError, Reschedule):
    """The endpoint must not be called for `delay` seconds (never more than RETRY_AFTER_CAP): the job waits."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(min(delay, RETRY_AFTER_CAP), message)


class RateLimitedError(LLMWaitError):
    """429 with a Retry-After longer than contentq sleeps through."""


class BreakerOpenError(LLMWaitError):
    """The circuit breaker is open after repeated failures."""


class ProviderHoldError(BreakerOpenError):
    """The endpoint asked for a wait longer than RETRY_AFTER_CAP: treated as an open breaker, the admin told."""


class MalformedResponseError(LLMError, RetryableError):
    """An HTTP 200 that is no chat completion (an HTML page, broken JSON) or whose text is not valid Unicode
    (a lone surrogate). Invalid output: asked again within the rewrite's tries, and counted by the breaker."""


@dataclass
class Completion:
    content: str | None
    refusal: str | None
    finish_reason: str | None
    model: str
    tokens_in: int
    tokens_out: int
    usage_estimated: bool = False
    tokens_cached: int = 0
    """Of tokens_in, those the provider's prompt cache served (`usage.prompt_tokens_details.cached_tokens`)."""


def cached_tokens(usage: Any) -> int:
    """The prompt tokens the provider's cache served, from a chat completion's usage block
    (`prompt_tokens_details.cached_tokens`; absent on servers without a prompt cache: 0)."""
    details = getattr(usage, "prompt_tokens_details", None)
    value = getattr(details, "cached_tokens", None)
    prompt = getattr(usage, "prompt_tokens", None) or 0
    return max(0, min(int(value), int(prompt))) if isinstance(value, int) else 0


def estimate_tokens(text: str) -> int:
    """A deliberately high token count: UTF-8 bytes / 3 (English runs ~4 bytes a token, Cyrillic ~4–5)."""
    return math.ceil(len(text.encode("utf-8")) / 3)


def estimate_messages(messages: Sequence[dict[str, Any]]) -> int:
    """Tokens a chat request's messages take, estimated high, with the per-message overhead."""
    return 3 + sum(4 + estimate_tokens(str(m.get("content") or "")) for m in messages)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying (and counted by the circuit breaker)."""
    if isinstance(exc, openai.APIConnectionError | MalformedResponseError):  # includes APITimeoutError
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
        if math.isnan(seconds) or seconds < 0:
            continue
        return seconds  # may be inf or huge: the caller caps it (RETRY_AFTER_CAP)
    return None


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _excerpt(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 1e9 else f"{value:.3g} s"


def _without_userinfo(url: str | None) -> str | None:
    """The URL without `user:password@` (it may hold a credential), for logs."""
    return re.sub(r"(?<=://)[^/@\s]*@", "", url) if url else url


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        code = f" {exc.code}" if exc.code else ""
        return f"HTTP {exc.status_code}{code}: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc.message}"
    return f"{type(exc).__name__}: {exc}"


describe_error = _describe
"""One line for an SDK error (status, code, message), for other users of the SDK (the Batch API)."""


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


def _is_retried_in_call(exc: BaseException) -> bool:
    """HTTP failures worth another try within the call (a malformed answer is asked again by the rewriter)."""
    return isinstance(exc, openai.APIStatusError | openai.APIConnectionError) and is_transient(exc)


def _failure(state: tenacity.RetryCallState) -> BaseException:
    exc = state.outcome.exception() if state.outcome is not None else None
    assert exc is not None  # tenacity calls wait/stop/before_sleep only after a failed try
    return exc


def _asked_or_backoff(state: tenacity.RetryCallState) -> float:
    """The server's Retry-After when it sent one, else 1, 2, 4 … 8 s with jitter."""
    asked = retry_after_seconds(_failure(state))
    if asked is not None:
        return asked
    return min(8.0, 2.0 ** (state.attempt_number - 1)) * (0.75 + random.random() / 4)


# -- the circuit breaker ---------------------------------------------------------------------------


class _RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, also keeping the exact opening time (pybreaker keeps whole seconds)."""

    @property
    def opened_at(self) -> datetime | None:
        opened: datetime | None = pybreaker.CircuitRedisStorage.opened_at.fget(self)  # type: ignore[attr-defined]
        return opened

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        pybreaker.CircuitRedisStorage.opened_at.fset(self, now)  # type: ignore[attr-defined]
        with contextlib.suppress(redis.RedisError):  # the whole-second value is still there
            self._redis.set(llm_breaker_key("opened_at_exact"), repr(now.timestamp()))


def build_breaker(settings: Settings, conn: redis.Redis) -> pybreaker.CircuitBreaker:
    storage = _RedisStorage(pybreaker.STATE_CLOSED, conn, namespace=BREAKER_NAMESPACE)
    return pybreaker.CircuitBreaker(
        fail_max=max(1, settings.breaker_fail_max),
        reset_timeout=settings.breaker_reset_timeout,
        state_storage=storage,
        exclude=[lambda exc: not is_transient(exc)],  # a refused request says nothing about the provider's health
        name="llm",
    )


def breaker_state(settings: Settings, conn: redis.Redis) -> BreakerState:
    """Read the shared breaker from Redis without changing it."""
    return llm_breaker_state(settings, conn)


breaker_status = llm_breaker_status
"""For `contentq queue status` (the CLI registers the light `contentq.ops.breakers.llm_breaker_status`)."""


# -- the client --------------------------------------------------------------------------------------


class LLMClient:
    """Chat completions with structured output against any OpenAI-compatible endpoint."""

    def __init__(self, settings: Settings, conn: redis.Redis, *, client: openai.OpenAI | None = None) -> None:
        self.settings = settings
        self.model = settings.openai_model
        if client is None:
            client = openai_client(
                settings,
                timeout=settings.openai_timeout,
                missing_key="no OpenAI API key: set CONTENTQ_OPENAI_API_KEY (or CONTENTQ_OPENAI_BASE_URL for a local "
                'OpenAI-compatible server), or use rewriter = "clean" in the route',
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

    def allow_trial(self) -> None:
        """Let the next request through an open breaker (a trial: it closes the breaker or opens it again), for a
        job the operator asked to try now (`contentq jobs retry`) while the cool-down runs."""
        with contextlib.suppress(redis.RedisError):
            self.breaker.half_open()

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
        deadline: float | None = None,
        on_failure: FailedCall | None = None,
        cache_key: str | None = None,
    ) -> Completion:
        """One chat completion. `deadline` (a `time.monotonic()` instant, e.g. the job's timeout less a
        margin) bounds every HTTP try and wait, so the caller is never killed in the middle of a call;
        `on_failure` hears of each HTTP try that failed; `cache_key` (sent as `prompt_cache_key` unless
        CONTENTQ_OPENAI_PROMPT_CACHE_KEY is off) groups requests that share a prompt prefix."""
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
        request = self.request_for(messages, response_format, cache_key)
        if log is not None:
            endpoint = _without_userinfo(self.settings.openai_base_url)
            log.log(
                "llm_request",
                f"{self.model} via {endpoint or 'api.openai.com'}, ~{needed} tokens",
                base_url=endpoint,
                model=self.model,
                temperature=self.settings.openai_temperature,
                messages=[
                    {"role": m.get("role"), "content": str(m.get("content") or "")[:LOG_CHARS]} for m in messages
                ],
            )
        response = self._call_with_retries(request, log, deadline, on_failure)
        return self.completion_of(response, messages, log)

    def request_for(
        self,
        messages: Sequence[dict[str, Any]],
        response_format: dict[str, Any] | None = None,
        cache_key: str | None = None,
    ) -> dict[str, Any]:
        """The chat completion request's body: what a direct call sends, and a batch line's `body`."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": self.settings.openai_temperature,
            "max_tokens": self.settings.openai_max_output_tokens,
        }
        if response_format is not None:
            request["response_format"] = response_format
        if cache_key and self.settings.openai_prompt_cache_key:
            request["prompt_cache_key"] = cache_key
        return request

    def completion_of(
        self, response: ChatCompletion, messages: Sequence[dict[str, Any]], log: EventLog | None = None
    ) -> Completion:
        """What contentq keeps of a chat completion (a direct call's, or a batch line's body), logged."""
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
            tokens_cached=cached_tokens(usage),
        )
        if log is not None:
            log.log(
                "llm_response",
                f"{completion.finish_reason}, {completion.tokens_in} tokens in"
                + (f" ({completion.tokens_cached} cached)" if completion.tokens_cached else "")
                + f", {completion.tokens_out} out"
                + (" (input estimated)" if estimated else ""),
                content=(content or "")[:LOG_CHARS],
                refusal=completion.refusal,
                usage={
                    "in": completion.tokens_in,
                    "cached": completion.tokens_cached,
                    "out": completion.tokens_out,
                    "estimated": estimated,
                },  # fmt: skip
            )
        return completion

    def _call_with_retries(
        self, request: dict[str, Any], log: EventLog | None, deadline: float | None, on_failure: FailedCall | None
    ) -> Any:
        """Up to `openai_call_attempts` HTTP tries on transient errors (tenacity), all of them before `deadline`.

        Waits between tries are short (Retry-After up to `openai_retry_after_max`, else 1, 2, 4 … s); each
        try gets at most the time left before the deadline, and a wait that would leave no time for the next
        try is not slept: a server-asked wait becomes `RateLimitedError` (the job comes back then), any
        other ends the call with `LLMUnavailableError`. A refused request (4xx) is not retried: it is fatal.
        """
        attempts = max(1, self.settings.openai_call_attempts)

        def time_left() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        def stop(state: tenacity.RetryCallState) -> bool:
            """The last try was made, or waiting would leave the next one no time before the deadline."""
            left = time_left()
            return state.attempt_number >= attempts or (left is not None and state.upcoming_sleep + MIN_TRY_S > left)

        def give_up(state: tenacity.RetryCallState) -> NoReturn:
            exc = _failure(state)
            if state.attempt_number >= attempts:
                raise LLMUnavailableError(f"the LLM endpoint failed {attempts} times, last {_describe(exc)}") from exc
            asked = retry_after_seconds(exc)
            if asked is not None:
                raise RateLimitedError(
                    f"the LLM endpoint asks to wait {asked:.0f} s ({_describe(exc)}) and the job has "
                    f"{max(0.0, time_left() or 0.0):.0f} s left",
                    delay=max(1.0, asked),
                ) from exc
            raise LLMUnavailableError(
                f"the LLM endpoint failed ({_describe(exc)}) and the job has no time left for another try"
            ) from exc

        def log_retry(state: tenacity.RetryCallState) -> None:
            if log is not None:
                log.log(
                    "llm_retry",
                    f"{_describe(_failure(state))}; retrying in {state.upcoming_sleep:.1f} s "
                    f"(try {state.attempt_number + 1}/{attempts})",
                    level="warning",
                )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_retried_in_call),
            wait=_asked_or_backoff,
            stop=stop,
            before_sleep=log_retry,
            retry_error_callback=give_up,
        )
        try:
            for attempt in retrying:
                with attempt:
                    timeout = self._time_for_a_try(deadline)
                    if timeout is None:
                        raise LLMUnavailableError(
                            "no time left in the job for another LLM request (CONTENTQ_REWRITE_TIMEOUT); "
                            "the job is retried"
                        )
                    return self._attempt(request, timeout, on_failure)
        except openai.APIStatusError as exc:  # not transient (transient ones end in give_up)
            raise _fatal(exc, self.model) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _time_for_a_try(self, deadline: float | None) -> float | None:
        """The timeout of the next HTTP try: openai_timeout, or less when the deadline is nearer; None: no time."""
        if deadline is None:
            return self.settings.openai_timeout
        left = deadline - time.monotonic()
        if left < MIN_TRY_S:
            return None
        return min(self.settings.openai_timeout, left)

    def _create_checked(self, **request: Any) -> Any:
        """The SDK call, and a check that the answer is a chat completion in valid Unicode: inside the breaker,
        so a provider answering HTML pages or garbage with HTTP 200 opens it like one answering 502."""
        try:
            response = self.client.chat.completions.create(**request)
        except ValueError as exc:  # the SDK's json.loads of a broken body (JSONDecodeError)
            raise MalformedResponseError(f"the LLM endpoint answered HTTP 200 with broken JSON ({exc})") from None
        return check_completion(response)

    def _attempt(self, request: dict[str, Any], timeout: float, on_failure: FailedCall | None = None) -> Any:
        """One HTTP request through the breaker."""

        def counted(**kwargs: Any) -> Any:
            try:
                return self._create_checked(**kwargs)
            except (openai.APIError, MalformedResponseError) as exc:
                if on_failure is not None:
                    on_failure(_describe(exc))
                raise

        try:
            return self.breaker.call(counted, **request, timeout=timeout)
        except pybreaker.CircuitBreakerError:
            cooldown = max(1.0, self.cooldown_remaining() or float(self.settings.breaker_reset_timeout))
            raise BreakerOpenError(
                f"the LLM circuit breaker opened after {self.settings.breaker_fail_max} failures; "
                f"trying again in {cooldown:.0f} s",
                delay=cooldown,
            ) from None
        except openai.APIStatusError as exc:
            asked = retry_after_seconds(exc)
            if is_transient(exc) and asked is not None and asked > RETRY_AFTER_CAP:
                with contextlib.suppress(redis.RedisError):
                    self.breaker.open()  # every worker stops calling, not only this job
                raise ProviderHoldError(
                    f"the LLM endpoint asks to wait {_seconds(asked)} ({_describe(exc)}), more than "
                    f"{RETRY_AFTER_CAP:.0f} s: taken as an outage, the breaker is open; trying again in "
                    f"{RETRY_AFTER_CAP:.0f} s",
                    delay=RETRY_AFTER_CAP,
                ) from exc
            if is_transient(exc) and asked is not None and asked > self.settings.openai_retry_after_max:
                raise RateLimitedError(
                    f"the LLM endpoint asks to wait {asked:.0f} s ({_describe(exc)})", delay=asked
                ) from exc
            raise


def check_completion(response: Any) -> ChatCompletion:
    """`response` if it is a chat completion whose texts are valid Unicode, else MalformedResponseError: for a
    direct call's answer and a batch line's alike."""
    if not isinstance(response, ChatCompletion) or not isinstance(response.choices, list):
        shown = response if isinstance(response, str) else type(response).__name__
        raise MalformedResponseError(
            f"the LLM endpoint answered HTTP 200 without a chat completion: {_excerpt(str(shown), 200)!r}"
        )
    for choice in response.choices:
        message = getattr(choice, "message", None)
        if message is None:
            raise MalformedResponseError("the LLM endpoint answered HTTP 200 with a choice without a message")
        for text in (getattr(message, "content", None), getattr(message, "refusal", None)):
            if isinstance(text, str) and _SURROGATE.search(text):
                raise MalformedResponseError("the answer is not valid Unicode (a lone surrogate)")
    return response


def build_llm_client(runtime: Runtime) -> LLMClient:
    return LLMClient(runtime.settings, runtime.redis)


def json_schema_format(name: str, schema: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """`response_format` for Structured Outputs."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}
