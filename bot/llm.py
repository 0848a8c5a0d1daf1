"""The chat model: GPT-4o (or any OpenAI-compatible server) through the official SDK.

One place knows the SDK: streaming, usage and cost, transcription, and how its exceptions map to
the few failure kinds the engine acts on. Retries are the SDK's own (`max_retries`), which honour
`Retry-After`; nothing here retries on top of them, so attempts never multiply. Each model of the
chain gets `limits.model_timeout_seconds` to start answering, its SDK retries included (the
SDK would otherwise retry a hung model twice, each with the full timeout, before the next model
is tried); after that the same timeout bounds each silence within the stream. A stream that
ends without the model saying it finished (no `finish_reason`) is broken, not complete: an
empty body, a non-SSE body, a truncated line.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, cast

import openai
import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.trace import Status, StatusCode

from bot import metrics
from bot.config import Behaviour, Settings
from bot.telemetry import tracing

log = structlog.get_logger(__name__)
_T = TypeVar("_T")


class FailureKind(enum.StrEnum):
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    REJECTED = "rejected"  # 4xx: the request itself was refused (too large, content policy)
    UNAVAILABLE = "unavailable"  # 5xx after the SDK's retries
    BROKEN_STREAM = "broken_stream"


class IncompleteStream(Exception):
    """The answer's stream ended (cleanly, as HTTP goes) before the model said it finished."""


class ModelError(Exception):
    """A model call failed; `kind` is what the engine tells the user about, `detail` is for logs."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Usage:
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    usage: Usage
    first_token_seconds: float | None
    seconds: float


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model called one of the tools it was offered; `arguments` are parsed JSON ({} when
    the model sent something unreadable)."""

    name: str
    arguments: dict[str, Any]


StreamEvent = TextDelta | ToolCall | StreamEnd


class Breaker:
    """A circuit breaker per model: after `threshold` failures in a row the model is skipped
    for `cooldown` seconds (answers go straight to the next one instead of waiting out its
    timeouts), then tried again with one request."""

    def __init__(self, *, threshold: int = 3, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def open(self) -> bool:
        return self._opened_at is not None and \
            self._clock() - self._opened_at < self._cooldown

    def success(self) -> None:
        self._failures, self._opened_at = 0, None

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()


@dataclass(slots=True)
class Target:
    """One model of the fallback chain: a model name at an OpenAI-compatible endpoint."""

    client: AsyncOpenAI
    model: str
    breaker: Breaker = field(default_factory=Breaker)


class ChatModel:
    def __init__(self, client: AsyncOpenAI, *, model: str, transcribe_model: str,
                 behaviour: Behaviour, fallbacks: Sequence[Target] = ()) -> None:
        self._client = client
        self.model = model
        self.transcribe_model = transcribe_model
        self._behaviour = behaviour
        self.targets = [Target(client, model), *fallbacks]
        self._preferred: dict[str, Target] = {}

    @classmethod
    def from_settings(cls, settings: Settings, behaviour: Behaviour) -> ChatModel | None:
        """None when no key is configured: the engine then runs without a model. Fallbacks:
        `BOTHUB_FALLBACK_MODELS` (same provider), then the YAML's `fallbacks` (any
        OpenAI-compatible endpoint: Azure OpenAI, a local server)."""
        if settings.openai_api_key is None:
            return None
        timeout = behaviour.limits.model_timeout_seconds
        client = AsyncOpenAI(api_key=settings.openai_api_key.get_secret_value(),
                             base_url=settings.openai_base_url or None,
                             timeout=timeout, max_retries=2, http_client=_http_client())
        fallbacks = [Target(client, name.strip())
                     for name in settings.fallback_models.split(",") if name.strip()]
        for other in behaviour.fallbacks:
            key = os.environ.get(other.api_key_env, "") if other.api_key_env else ""
            fallbacks.append(Target(AsyncOpenAI(api_key=key or "unused", base_url=other.base_url,
                                                timeout=timeout, max_retries=1,
                                                http_client=_http_client()), other.model))
        return cls(client, model=settings.chat_model, transcribe_model=settings.transcribe_model,
                   behaviour=behaviour, fallbacks=fallbacks)

    def available(self) -> bool:
        """Some model of the chain is not paused by its breaker."""
        return any(not target.breaker.open for target in self.targets)

    async def close(self) -> None:
        for client in {id(t.client): t.client for t in self.targets}.values():
            await client.close()

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> Decimal:
        price = self._behaviour.price(model)
        if price is None:
            return Decimal(0)
        total = (Decimal(str(price.input)) * tokens_in + Decimal(str(price.output)) * tokens_out)
        return (total / Decimal(1_000_000)).quantize(Decimal("0.000001"))

    def _usage(self, model: str, usage: Any) -> Usage:
        """From the SDK's usage object, or a stream's usage as plain JSON (see `_stream_one`)."""
        read = usage.get if isinstance(usage, dict) else lambda name: getattr(usage, name, 0)
        tokens_in = int(read("prompt_tokens") or 0) if usage else 0
        tokens_out = int(read("completion_tokens") or 0) if usage else 0
        cost = self.cost(model, tokens_in, tokens_out)
        metrics.TOKENS.add(tokens_in, {"model": model, "direction": "in"})
        metrics.TOKENS.add(tokens_out, {"model": model, "direction": "out"})
        metrics.COST.add(float(cost), {"model": model})
        return Usage(model=model, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost)

    def _chain(self, model: str | None) -> list[Target]:
        """The fallback chain, led by `model` when one is asked for (a cheaper model once a
        budget is spent), on the primary endpoint."""
        if model is None or model == self.targets[0].model:
            return self.targets
        if model not in self._preferred:
            self._preferred[model] = Target(self._client, model)
        return [self._preferred[model], *self.targets]

    async def stream(self, messages: Sequence[dict[str, Any]], *, max_tokens: int,
                     temperature: float, tools: Sequence[dict[str, Any]] = (),
                     model: str | None = None) -> AsyncIterator[StreamEvent]:
        """Yield the answer's text as it arrives, the tool calls once complete, then one
        `StreamEnd` with usage and timings. A model that fails before its first token is
        replaced by the next of the chain; one that fails mid-answer ends the answer (the
        user has seen part of it: another model would start over)."""
        failure: ModelError | None = None
        refused: set[int] = set()  # clients whose key was refused: their other models too
        for target in self._chain(model):
            if target.breaker.open or id(target.client) in refused:
                continue
            started = False
            request: dict[str, tracing.AttributeValue | None] = {
                "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                "gen_ai.request.model": target.model, "gen_ai.request.max_tokens": max_tokens}
            span = tracing.start_span("bothub.llm.chat", **request)
            try:
                async for event in self._stream_one(target, messages, max_tokens=max_tokens,
                                                    temperature=temperature, tools=tools):
                    started = started or isinstance(event, TextDelta)
                    if isinstance(event, StreamEnd):
                        span.set_attributes({
                            "gen_ai.response.model": event.usage.model,
                            "gen_ai.usage.input_tokens": event.usage.tokens_in,
                            "gen_ai.usage.output_tokens": event.usage.tokens_out,
                            "bothub.cost_usd": float(event.usage.cost_usd),
                            "bothub.first_token_seconds": event.first_token_seconds or 0.0})
                    yield event
            except ModelError as exc:
                span.set_status(Status(StatusCode.ERROR, exc.kind.value))
                target.breaker.failure()
                if started:
                    raise
                if exc.kind is FailureKind.AUTH:
                    refused.add(id(target.client))
                failure = exc
                log.warning("llm.falling_back", failed=target.model, kind=exc.kind.value)
                continue
            finally:
                span.end()
            target.breaker.success()
            return
        raise failure or ModelError(FailureKind.UNAVAILABLE,
                                    "every model is paused after repeated failures")

    async def _stream_one(self, target: Target, messages: Sequence[dict[str, Any]], *,
                          max_tokens: int, temperature: float,
                          tools: Sequence[dict[str, Any]]) -> AsyncIterator[StreamEvent]:
        started = time.monotonic()
        first_token: float | None = None
        usage: Any = None
        finished = False  # a finish_reason (or the usage chunk that follows it) arrived
        calls: dict[Any, list[str]] = {}  # index -> [name, arguments so far]
        options: dict[str, Any] = {"tools": list(tools), "tool_choice": "auto"} if tools else {}
        try:
            raw = await _within(
                self._behaviour.limits.model_timeout_seconds,
                target.client.chat.completions.with_raw_response.create(
                    model=target.model, messages=_as_params(messages),
                    max_completion_tokens=max_tokens, temperature=temperature, stream=True,
                    stream_options={"include_usage": True}, **options))
            # The SDK's own stream (its SSE decoding, `[DONE]`, error events, timeouts and
            # connection errors as its exceptions), with each chunk as the JSON it came in:
            # building a `ChatCompletionChunk` model for each of an answer's ~50 chunks cost
            # more CPU than the rest of the stream (about 65 µs a chunk).
            response = raw.parse(to=openai.AsyncStream[object])
            async with response:
                async for chunk in response:
                    if not isinstance(chunk, dict):
                        raise IncompleteStream("a piece of the stream is not a JSON object")
                    if chunk.get("usage") is not None:
                        usage, finished = chunk["usage"], True
                    for choice in _objects(chunk.get("choices")):
                        finished = finished or choice.get("finish_reason") is not None
                        delta = choice.get("delta")
                        delta = delta if isinstance(delta, dict) else {}
                        for piece in _objects(delta.get("tool_calls")):
                            call = calls.setdefault(piece.get("index"), ["", ""])
                            function = piece.get("function")
                            if isinstance(function, dict):
                                call[0] += function.get("name") or ""
                                call[1] += function.get("arguments") or ""
                        text = delta.get("content")
                        if isinstance(text, str) and text:
                            if first_token is None:
                                first_token = time.monotonic() - started
                                metrics.LLM_FIRST_TOKEN.record(first_token, {"model": target.model})
                            yield TextDelta(text)
            if not finished:
                raise IncompleteStream("the stream ended before the model finished its answer")
        except Exception as exc:
            raise self._failure(exc, "chat", target.model) from exc
        for name, arguments in calls.values():
            yield ToolCall(name, _json_object(arguments))
        seconds = time.monotonic() - started
        metrics.LLM_LATENCY.record(seconds, {"model": target.model, "kind": "chat"})
        yield StreamEnd(usage=self._usage(target.model, usage), first_token_seconds=first_token,
                        seconds=seconds)

    async def complete(self, messages: Sequence[dict[str, Any]], *,
                       max_tokens: int) -> tuple[str, Usage]:
        """One whole answer, for work the user does not watch (summaries); the fallback chain
        applies as for answers."""
        failure: ModelError | None = None
        refused: set[int] = set()
        for target in self.targets:
            if target.breaker.open or id(target.client) in refused:
                continue
            started = time.monotonic()
            try:
                completion = await _within(
                    self._behaviour.limits.model_timeout_seconds,
                    target.client.chat.completions.create(
                        model=target.model, messages=_as_params(messages),
                        max_completion_tokens=max_tokens, temperature=0))
                # A 200 that is not JSON comes back from the SDK as a plain string.
                text = (completion.choices[0].message.content or "") \
                    if completion.choices else ""
                usage = completion.usage
            except Exception as exc:
                target.breaker.failure()
                failure = self._failure(exc, "complete", target.model)
                if failure.kind is FailureKind.AUTH:
                    refused.add(id(target.client))
                continue
            target.breaker.success()
            metrics.LLM_LATENCY.record(time.monotonic() - started,
                                       {"model": target.model, "kind": "complete"})
            return text.strip(), self._usage(target.model, usage)
        raise failure or ModelError(FailureKind.UNAVAILABLE,
                                    "every model is paused after repeated failures")

    async def transcribe(self, filename: str, data: bytes, content_type: str) -> str:
        started = time.monotonic()
        try:
            result = await self._client.audio.transcriptions.create(
                model=self.transcribe_model, file=(filename, data, content_type))
        except Exception as exc:
            raise self._failure(exc, "transcribe", self.transcribe_model) from exc
        metrics.LLM_LATENCY.record(time.monotonic() - started,
                                   {"model": self.transcribe_model, "kind": "transcribe"})
        return (getattr(result, "text", None) or str(result)).strip()

    def _failure(self, exc: Exception, what: str, model: str) -> ModelError:
        kind = classify(exc)
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        metrics.LLM_ERRORS.add(1, {"model": model, "reason": kind.value})
        log.warning("llm.failed", call=what, model=model, kind=kind.value, detail=detail)
        return ModelError(kind, detail)


def _http_client() -> openai.DefaultAioHttpClient:
    """The SDK's aiohttp transport (its documented alternative to httpx): an answer streams
    ~50 pieces, and httpx's anyio socket re-registers the socket with the event loop for each
    read, where aiohttp's protocol just receives. About a third less CPU per streamed answer;
    timeouts, retries and errors stay the SDK's."""
    return openai.DefaultAioHttpClient()


def classify(exc: Exception) -> FailureKind:
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(exc, openai.APIConnectionError):
        return FailureKind.UNREACHABLE
    if isinstance(exc, openai.RateLimitError):
        return FailureKind.RATE_LIMITED
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return FailureKind.AUTH
    if isinstance(exc, openai.APIStatusError):
        return FailureKind.UNAVAILABLE if exc.status_code >= 500 else FailureKind.REJECTED
    return FailureKind.BROKEN_STREAM


async def _within(seconds: float, call: Awaitable[_T]) -> _T:
    """`call` (a request with the SDK's retries and their waits) or a TimeoutError."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        raise TimeoutError(f"no response within {seconds:g} s, retries included") from None


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _objects(value: object) -> list[dict[str, Any]]:
    """The JSON objects of a list in a stream's chunk (none where the list is missing)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _as_params(messages: Sequence[dict[str, Any]]) -> list[ChatCompletionMessageParam]:
    """Our prompt builder emits the API's message shapes as plain dicts."""
    return cast(list[ChatCompletionMessageParam], list(messages))
