"""A fake OpenAI API that the real `openai` SDK talks to over a loopback socket.

Tests exercise the bot's real HTTP client path (retries, SSE parsing, multipart uploads) instead
of mocking the SDK, so a change in how the SDK speaks to the API shows up here first. The server
runs in its own thread with its own event loop: in-process async tests, sync tests and
subprocesses (a CLI started with OPENAI_BASE_URL=fake.base_url) can all use the same instance.

Typical use::

    with FakeOpenAI() as fake:
        fake.queue(ScriptedReply(text="Hi there"))
        client = AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key)
        ...
        assert fake.chat_requests()[-1]["model"] == "gpt-4o-mini"

Function/tool calls are scripted with `ScriptedReply(tool_calls=[ScriptedToolCall(...)])` and
sent in the real Chat Completions wire shape (streamed as per-index deltas of the arguments).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import itertools
import json
import math
import re
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import MultipartReader, hdrs, web

from tests.fakes.background_server import BackgroundServer

__all__ = [
    "DEFAULT_TRANSCRIPT",
    "FakeOpenAI",
    "RecordedRequest",
    "ScriptedReply",
    "ScriptedToolCall",
    "default_responder",
    "fake_embedding",
    "split_pieces",
]

DEFAULT_API_KEY = "sk-test-fake"
DEFAULT_TRANSCRIPT = "This is a transcribed voice message."
DEFAULT_EMBEDDING_DIMENSIONS = 1536
IMAGE_PART_TOKENS = 85
MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "whisper-1")
# /v1/moderations flags an input that contains the marker word (case-insensitive), in these
# categories; FakeOpenAI.moderation_marker / moderation_categories change both.
DEFAULT_MODERATION_MARKER = "FLAGME"
DEFAULT_MODERATION_CATEGORIES = ("harassment",)
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# `retry-after: 0` is ignored by the SDK (it only honours delays > 0 and then falls back to
# 0.5 s exponential backoff), so fast scripted failures use the millisecond header instead.
FAST_RETRY_HEADERS: dict[str, str] = {"retry-after-ms": "1"}

_MAX_BODY = 64 * 1024 * 1024
_PIECE_RE = re.compile(r"\s*\S+\s*")
_WORD_RE = re.compile(r"\w+")
# Streamed tool-call arguments arrive in token-like pieces: `{"`, `city`, `":"`, `Paris`, `"}`.
_ARGUMENT_PIECE_RE = re.compile(r"\w+|\W+")

Responder = Callable[[dict[str, Any]], str]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Headers(dict[str, str]):
    """Header dict with lower-cased keys and case-insensitive lookups, as HTTP headers are."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as the fake saw it, so tests can assert on what the SDK actually sent."""

    method: str
    path: str  # e.g. "/v1/chat/completions"
    headers: dict[str, str]  # keys lower-cased; lookups are case-insensitive
    json: dict[str, Any] | None  # parsed JSON object body, if any
    form: dict[str, str]  # multipart text fields (audio), else {}
    files: dict[str, tuple[str, bytes, str]]  # field -> (filename, content, content_type)
    # True if the reply carried scripted tool calls although the request sent no `tools`.
    tool_calls_without_tools: bool = False
    # time.monotonic() when the request arrived: tests measure the SDK's retry waits with it.
    received_at: float = field(default_factory=time.monotonic)
    # A streamed answer's first piece of text and its end ([DONE] written), time.monotonic():
    # the model's own time as its client sees it, sleeps' overshoot included (benchmarks).
    first_piece_at: float | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class ScriptedToolCall:
    """One function call the scripted assistant makes (see `ScriptedReply.tool_calls`).

    A dict `arguments` is sent as compact JSON; a string is sent verbatim (e.g. broken JSON).
    `id=None` gets a generated "call_<n>" (n counts up per server, restarting at `reset()`).
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass
class ScriptedReply:
    """One scripted answer to the next /chat/completions request (FIFO, see FakeOpenAI.queue).

    With a non-200 `status`, `text` (if given) becomes the error message. `delay`/`chunk_delay`
    of 0 mean "use the server defaults". `disconnect_after_chunks`/`malformed` also apply to
    non-stream requests: the connection is dropped before any byte, or the body is not JSON.

    `tool_calls` makes the answer call functions, as the real API does: content (if `text` is
    given; the responder is not consulted) comes first, then the calls, and `finish_reason` is
    "tool_calls". They are sent even if the request had no `tools` (the recorded request then
    has `tool_calls_without_tools=True`). In a stream, `disconnect_after_chunks` counts content
    and tool-call chunks after the opening one.

    Garbled answers (streams only, counted like `disconnect_after_chunks`): `end_after_chunks`
    ends the HTTP body cleanly after that many chunks, with no `finish_reason`, usage or
    `[DONE]`; `error_after_chunks` sends an error event (`data: {"error": {...}}`, message
    `error_message`) after that many chunks, then ends the body. `body` replaces the whole
    answer with these bytes, sent with status 200 and `headers` (content type
    `text/event-stream` unless `headers` says otherwise): an empty stream, a non-SSE body, a
    truncated `data:` line.
    """

    text: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    disconnect_after_chunks: int | None = None
    malformed: bool = False
    tool_calls: list[ScriptedToolCall] | None = None
    end_after_chunks: int | None = None
    error_after_chunks: int | None = None
    error_message: str = "The server had an error while processing your request."
    body: bytes | None = None


# Per-request storage: the middleware's record, and the raw body to tell "no JSON" from "bad JSON".
_RECORD_KEY = web.RequestKey("fake_openai_record", RecordedRequest)
_RAW_KEY = web.RequestKey("fake_openai_raw_body", bytes)


def _message_text(content: Any) -> str:
    """Text of a message `content`: a string, or the "text" parts of a list joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def default_responder(body: dict[str, Any]) -> str:
    """Echo the last user message: predictable answers without scripting every test."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "You said: " + _message_text(message.get("content"))
    return "You said: "


def prompt_tokens(messages: Iterable[Any]) -> int:
    """Deterministic stand-in for the tokenizer: chars // 4 (at least 1) plus 85 per image."""
    chars = 0
    images = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        chars += len(_message_text(content))
        if isinstance(content, list):
            images += sum(
                1 for part in content if isinstance(part, dict) and part.get("type") == "image_url"
            )
    return max(1, chars // 4) + IMAGE_PART_TOKENS * images


def split_pieces(text: str) -> list[str]:
    """Split an answer into words with their trailing whitespace, so streams have many deltas."""
    pieces = _PIECE_RE.findall(text)
    if not pieces and text:
        return [text]  # whitespace only
    return pieces


def _split_arguments(arguments: str) -> list[str]:
    """Split a tool call's JSON arguments into token-like pieces (none for an empty string)."""
    return _ARGUMENT_PIECE_RE.findall(arguments)


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """A feature-hashed bag of lower-cased words, L2-normalised.

    Texts sharing words share hashed coordinates, so their cosine similarity is higher than
    that of unrelated texts, which is all retrieval tests need.
    """
    vector = [0.0] * dimensions
    tokens = _WORD_RE.findall(text.lower()) or [text.lower()]
    for token in tokens:
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=64).digest()
        for offset in range(0, len(digest), 4):
            value = int.from_bytes(digest[offset : offset + 4], "little")
            sign = 1.0 if (value // dimensions) % 2 == 0 else -1.0
            vector[value % dimensions] += sign
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:  # every coordinate cancelled out: still return a unit vector
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to use this resource."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("server_error", None, "Request timed out."),
    409: ("invalid_request_error", None, "Conflict."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
}


def error_response(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-style error body, which the SDK turns into the matching APIStatusError."""
    default_type, default_code, default_message = _ERROR_KINDS.get(
        status,
        ("server_error", None, "The server had an error while processing your request.")
        if status >= 500
        else ("invalid_request_error", None, "Request failed."),
    )
    body = {
        "error": {
            "message": message or default_message,
            "type": default_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }
    return web.json_response(body, status=status, headers=headers)


def _new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def _drop_connection(request: web.Request) -> None:
    """Close the socket mid-response: buffered bytes are flushed, the HTTP message is not ended."""
    transport = request.transport
    if transport is not None:
        transport.close()


class FakeOpenAI(BackgroundServer):
    """The fake server; see the module docstring. Attributes may be changed at any time."""

    name = "fake OpenAI server"
    thread_name = "fake-openai"
    api_key: str = DEFAULT_API_KEY

    def __init__(self) -> None:
        super().__init__()
        self.api_key = DEFAULT_API_KEY
        self.requests: list[RecordedRequest] = []
        self.responder: Responder = default_responder
        self.transcript: str = DEFAULT_TRANSCRIPT
        self.default_delay: float = 0.0
        self.default_chunk_delay: float = 0.0
        self._lock = threading.Lock()
        self._script: collections.deque[ScriptedReply] = collections.deque()
        self._tool_call_ids = itertools.count(1)
        self.moderation_marker: str = DEFAULT_MODERATION_MARKER
        self.moderation_categories: list[str] = list(DEFAULT_MODERATION_CATEGORIES)
        # Every moderation request gets this instead, when set: its `status` (with `text` as the
        # message and `headers`), after its `delay`, or its `body` as a 200 (JSON by default).
        self.moderation_fault: ScriptedReply | None = None
        # A model that is down: every chat request for it gets this reply (never consumed,
        # ahead of the queue), e.g. {"gpt-4o": ScriptedReply(status=503)}.
        self.model_faults: dict[str, ScriptedReply] = {}

    # -- lifecycle (start/stop/with: see BackgroundServer) -------------------------------------

    @property
    def base_url(self) -> str:
        """What to pass as `base_url` (or OPENAI_BASE_URL): "http://127.0.0.1:PORT/v1"."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget requests and scripts and restore every default, for test isolation."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self._tool_call_ids = itertools.count(1)
        self.responder = default_responder
        self.transcript = DEFAULT_TRANSCRIPT
        self.default_delay = 0.0
        self.default_chunk_delay = 0.0
        self.api_key = DEFAULT_API_KEY
        self.moderation_marker = DEFAULT_MODERATION_MARKER
        self.moderation_categories = list(DEFAULT_MODERATION_CATEGORIES)
        self.moderation_fault = None
        self.model_faults = {}

    def queue(self, *replies: ScriptedReply) -> None:
        """Script the next chat completions, first in first out; each request pops one."""
        with self._lock:
            self._script.extend(replies)

    def fail_next(self, n: int, status: int = 500, headers: dict[str, str] | None = None) -> None:
        """Queue `n` error replies. `headers=None` means FAST_RETRY_HEADERS (SDK retries at once);
        pass `{}` to get the SDK's own exponential backoff."""
        reply_headers = dict(FAST_RETRY_HEADERS if headers is None else headers)
        self.queue(*(ScriptedReply(status=status, headers=dict(reply_headers)) for _ in range(n)))

    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the chat completion requests received so far, in order."""
        with self._lock:
            return [
                r.json
                for r in self.requests
                if r.method == "POST" and r.path == "/v1/chat/completions" and r.json is not None
            ]

    def chat_streams(self) -> list[RecordedRequest]:
        """The chat completion requests whose answer was streamed to its end, in order."""
        with self._lock:
            return [r for r in self.requests
                    if r.path == "/v1/chat/completions" and r.ended_at is not None]

    def _pop_script(self) -> ScriptedReply | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _wire_tool_calls(self, calls: list[ScriptedToolCall]) -> list[dict[str, Any]]:
        """The scripted calls as the non-stream `message.tool_calls` list, ids filled in."""
        wire = []
        for call in calls:
            if call.id is not None:
                call_id = call.id
            else:
                with self._lock:
                    call_id = f"call_{next(self._tool_call_ids)}"
            arguments = (
                call.arguments
                if isinstance(call.arguments, str)
                else json.dumps(call.arguments, separators=(",", ":"), ensure_ascii=False)
            )
            wire.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                }
            )
        return wire

    # -- HTTP --------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[self._middleware()])
        app.on_response_prepare.append(self._add_request_id)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_get("/v1/models/{model}", self._get_model)
        return app

    @staticmethod
    async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("x-request-id", _new_request_id())

    def _middleware(self) -> Callable[[web.Request, _Handler], Awaitable[web.StreamResponse]]:
        """Record every request (even 404s and failures) and answer unknown routes like OpenAI."""

        @web.middleware
        async def record_and_map_errors(
            request: web.Request, handler: _Handler
        ) -> web.StreamResponse:
            body: dict[str, Any] | None = None
            raw = b""
            if request.body_exists and not request.content_type.startswith("multipart/"):
                raw = await request.read()
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                body = parsed if isinstance(parsed, dict) else None
            record = RecordedRequest(
                method=request.method,
                path=request.path,
                headers=_Headers((k.lower(), v) for k, v in request.headers.items()),
                json=body,
                form={},
                files={},
            )
            with self._lock:
                self.requests.append(record)
            request[_RECORD_KEY] = record
            request[_RAW_KEY] = raw
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status in (404, 405):
                    return error_response(
                        404, f"Invalid URL ({request.method} {request.path})", code=None
                    )
                raise

        return record_and_map_errors

    @staticmethod
    def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
        """The recorded JSON object body, or the 400 the real API gives for a bad one."""
        record = request[_RECORD_KEY]
        if record.json is not None:
            return record.json
        if request[_RAW_KEY]:
            return error_response(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
            )
        return error_response(400, "you must provide a model parameter", param="model")

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        requested = (request[_RECORD_KEY].json or {}).get("model")
        fault = self.model_faults.get(requested) if isinstance(requested, str) else None
        scripted = fault or self._pop_script() or ScriptedReply()
        delay = scripted.delay or self.default_delay
        if delay > 0:
            await asyncio.sleep(delay)
        if scripted.status != 200:
            return error_response(scripted.status, scripted.text, headers=scripted.headers)
        if scripted.body is not None:
            return web.Response(
                body=scripted.body,
                headers={hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8", **scripted.headers},
            )

        body = self._json_body(request)
        if isinstance(body, web.Response):
            return body
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error_response(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if messages is None:
            return error_response(400, "Missing required parameter: 'messages'.", param="messages")
        if not isinstance(messages, list) or not messages:
            return error_response(
                400, "Invalid 'messages': expected a non-empty array.", param="messages"
            )
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            return error_response(
                400, "Invalid 'messages': every message needs a 'role'.", param="messages"
            )

        try:
            if scripted.text is not None:
                text = scripted.text
            elif scripted.tool_calls:
                text = ""  # a tool-calling answer without text: `content` is null
            else:
                text = self.responder(body)
            if not isinstance(text, str):
                raise TypeError(f"responder returned {type(text).__name__}, not str")
        except Exception as exc:  # surface test bugs as a non-retried 500, not a hang
            return error_response(
                500, f"fake responder failed: {exc!r}", headers={"x-should-retry": "false"}
            )

        pieces = split_pieces(text)
        tool_calls = self._wire_tool_calls(scripted.tool_calls or [])
        if tool_calls and not body.get("tools"):
            request[_RECORD_KEY].tool_calls_without_tools = True
        # Stream deltas after the opening one: the content, then per call a header (id, name,
        # empty arguments) followed by the arguments in pieces, as the real API streams them.
        deltas: list[dict[str, Any]] = [{"content": piece} for piece in pieces]
        for index, call in enumerate(tool_calls):
            function = call["function"]
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": function["name"], "arguments": ""},
                        }
                    ]
                }
            )
            deltas.extend(
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in _split_arguments(function["arguments"])
            )
        usage = {
            "prompt_tokens": prompt_tokens(messages),
            "completion_tokens": len(deltas),
            "total_tokens": prompt_tokens(messages) + len(deltas),
        }
        finish_reason = "tool_calls" if tool_calls else "stop"
        completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())

        if body.get("stream") is not True:
            if scripted.disconnect_after_chunks is not None:
                _drop_connection(request)
                return web.Response()
            if scripted.malformed:
                return web.Response(
                    body=b"{not json", content_type="application/json", headers=scripted.headers
                )
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message = {"role": "assistant", "content": text or None, "tool_calls": tool_calls}
            completion = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
            }
            return web.json_response(completion, headers=scripted.headers)

        stream_options = body.get("stream_options")
        include_usage = (
            isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        )

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                data["usage"] = None  # the real API sends null usage on every content chunk
            return data

        opening: dict[str, Any] = {"role": "assistant", "content": ""}
        if tool_calls and not pieces:  # no text: the role rides on the first call's header
            opening = {"role": "assistant", "content": None, **deltas.pop(0)}
        chunk_delay = scripted.chunk_delay or self.default_chunk_delay
        response = web.StreamResponse(
            status=200,
            headers={
                hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
                hdrs.CACHE_CONTROL: "no-cache",
                **scripted.headers,
            },
        )
        try:
            await response.prepare(request)
            await _send_event(response, chunk(opening))
            if scripted.malformed:
                await response.write(b"data: {this is not json\n\n")
                await response.write_eof()
                return response
            for index, delta in enumerate(deltas):
                if index == scripted.disconnect_after_chunks:
                    _drop_connection(request)
                    return response
                if index in (scripted.end_after_chunks, scripted.error_after_chunks):
                    await self._end_garbled(response, scripted)
                    return response
                if chunk_delay > 0:
                    await asyncio.sleep(chunk_delay)
                await _send_event(response, chunk(delta))
                if index == 0:
                    request[_RECORD_KEY].first_piece_at = time.monotonic()
            if scripted.disconnect_after_chunks is not None:
                _drop_connection(request)  # asked for more chunks than the answer has
                return response
            if scripted.end_after_chunks is not None or scripted.error_after_chunks is not None:
                await self._end_garbled(response, scripted)  # more chunks than the answer has
                return response
            if chunk_delay > 0:
                await asyncio.sleep(chunk_delay)
            await _send_event(response, chunk({}, finish_reason))
            if include_usage:
                final = chunk({})
                final["choices"] = []
                final["usage"] = usage
                await _send_event(response, final)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            request[_RECORD_KEY].ended_at = time.monotonic()
        except ConnectionError:
            pass  # the client stopped reading (closed the stream early or timed out)
        return response

    @staticmethod
    async def _end_garbled(response: web.StreamResponse, scripted: ScriptedReply) -> None:
        """End a stream early: an error event first if scripted, never `[DONE]`."""
        if scripted.error_after_chunks is not None:
            error = {
                "message": scripted.error_message,
                "type": "server_error",
                "param": None,
                "code": None,
            }
            await _send_event(response, {"error": error})
        await response.write_eof()

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        """Flag each input containing `moderation_marker`, unless `moderation_fault` is set."""
        fault = self.moderation_fault
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.status != 200:
                return error_response(fault.status, fault.text, headers=fault.headers)
            if fault.body is not None:
                return web.Response(
                    body=fault.body,
                    headers={hdrs.CONTENT_TYPE: "application/json", **fault.headers},
                )
        body = self._json_body(request)
        if isinstance(body, web.Response):
            return body
        texts = _moderation_inputs(body.get("input"))
        if texts is None:
            return error_response(400, "'$.input' is invalid.", param="input")
        marker = self.moderation_marker.lower()
        results = []
        for text in texts:
            flagged = bool(marker) and marker in text.lower()
            hits = set(self.moderation_categories) if flagged else set()
            results.append(
                {
                    "flagged": flagged,
                    "categories": {name: name in hits for name in MODERATION_CATEGORIES},
                    "category_scores": {
                        name: 0.97 if name in hits else 0.0001 for name in MODERATION_CATEGORIES
                    },
                    "category_applied_input_types": {
                        name: ["text"] if name in hits else [] for name in MODERATION_CATEGORIES
                    },
                }
            )
        return web.json_response(
            {
                "id": "modr-" + uuid.uuid4().hex[:24],
                "model": body.get("model") or "omni-moderation-latest",
                "results": results,
            }
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = self._json_body(request)
        if isinstance(body, web.Response):
            return body
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error_response(400, "you must provide a model parameter", param="model")
        texts = _embedding_inputs(body.get("input"))
        if texts is None:
            return error_response(400, "'$.input' is invalid.", param="input")
        dimensions = body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            return error_response(400, "Invalid 'dimensions'.", param="dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dimensions)
            embedding: str | list[float] = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(max(1, len(text) // 4) for text in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        record = request[_RECORD_KEY]
        if not request.content_type.startswith("multipart/"):
            return error_response(400, "Expected a multipart/form-data body.", param="file")
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, MultipartReader):
                await part.release()  # nested multipart: never sent by the SDK
                continue
            name = part.name or ""
            content = await part.read()
            if part.filename is not None:
                content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                record.files[name] = (part.filename, bytes(content), content_type)
            else:
                value = content.decode("utf-8", errors="replace")
                previous = record.form.get(name)
                record.form[name] = value if previous is None else f"{previous},{value}"
        if "file" not in record.files:
            return error_response(400, "you must provide a file", param="file")
        if not record.form.get("model"):
            return error_response(400, "you must provide a model parameter", param="model")
        if record.form.get("stream") == "true":
            return error_response(400, "The fake does not stream transcriptions.", param="stream")
        text = self.transcript
        response_format = record.form.get("response_format", "json")
        if response_format == "text":
            return web.Response(text=text, content_type="text/plain")
        if response_format == "srt":
            return web.Response(
                text=f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n", content_type="text/plain"
            )
        if response_format == "vtt":
            return web.Response(
                text=f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n",
                content_type="text/plain",
            )
        if response_format == "verbose_json":
            return web.json_response(
                {
                    "task": "transcribe",
                    "language": "english",
                    "duration": 1.0,
                    "text": text,
                    "segments": [],
                }
            )
        return web.json_response({"text": text})

    @staticmethod
    def _model(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [self._model(m) for m in MODELS]})

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        model_id = request.match_info["model"]
        if model_id not in MODELS:
            return error_response(
                404, f"The model '{model_id}' does not exist", code="model_not_found", param="model"
            )
        return web.json_response(self._model(model_id))


async def _send_event(response: web.StreamResponse, data: dict[str, Any]) -> None:
    """Write one SSE event exactly as OpenAI frames it: `data: {json}` and a blank line."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    await response.write(b"data: " + payload.encode("utf-8") + b"\n\n")


def _moderation_inputs(value: Any) -> list[str] | None:
    """The texts of a moderation `input`: a string, strings, or multi-modal parts (an image
    part counts as an empty text); None if invalid."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    texts = []
    for item in value:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and item.get("type") == "text":
            texts.append(str(item.get("text", "")))
        elif isinstance(item, dict) and item.get("type") == "image_url":
            texts.append("")
        else:
            return None
    return texts


def _embedding_inputs(value: Any) -> list[str] | None:
    """Normalise `input` (string, strings, token ids or lists of token ids); None if invalid."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value:
        items = value
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            items = [items]  # one tokenised input
    else:
        return None
    texts: list[str] = []
    for item in items:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            texts.append(" ".join(f"tok{t}" for t in item))
        else:
            return None
    return texts
