"""The fake OpenAI server, driven by the real `openai` SDK.

These pin down the wire behaviour the rest of the suite relies on: if the SDK changes how it
parses streams, retries or uploads files, these fail before the bot's own tests do.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam

from tests.fakes.openai_server import (
    DEFAULT_TRANSCRIPT,
    FakeOpenAI,
    ScriptedReply,
    ScriptedToolCall,
    prompt_tokens,
    split_pieces,
)

MODEL = "gpt-4o-mini"
PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    """One server per module: starting a thread and a socket per test would be wasted time."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    """The shared server, reset so no script or recorded request leaks between tests."""
    server.reset()
    return server


def sync_client(fake: FakeOpenAI, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, **kwargs)


def async_client(fake: FakeOpenAI, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, **kwargs)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_async_stream_yields_several_deltas_and_final_usage(fake: FakeOpenAI) -> None:
    async with async_client(fake) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "where is my order"},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 3
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == (
        "You said: where is my order"
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[0].id.startswith("chatcmpl-")
    assert all(c.model == MODEL and c.object == "chat.completion.chunk" for c in chunks)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}

    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    expected_prompt = (len("Be brief.") + len("where is my order")) // 4
    assert last.usage.prompt_tokens == expected_prompt
    assert last.usage.completion_tokens == len(content_chunks)
    assert last.usage.total_tokens == expected_prompt + len(content_chunks)
    assert fake.chat_requests()[0]["stream"] is True


def test_sync_stream_without_usage_option_has_no_usage_chunk(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(text="one two three"))
    with (
        sync_client(fake) as client,
        client.chat.completions.create(model=MODEL, messages=user("hi"), stream=True) as stream,
    ):
        chunks = list(stream)
    assert [c.choices[0].delta.content for c in chunks] == ["", "one ", "two ", "three", None]
    assert all(c.usage is None and c.choices for c in chunks)


def test_sync_non_stream_completion(fake: FakeOpenAI) -> None:
    with sync_client(fake) as client:
        completion = client.chat.completions.create(model=MODEL, messages=user("reset password"))

    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said: reset password"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len("reset password") // 4
    assert completion.usage.completion_tokens == len(split_pieces("You said: reset password"))

    (recorded,) = fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert recorded.json is not None and recorded.json["messages"] == user("reset password")


def test_custom_responder_and_scripted_text(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: f"{len(body['messages'])} messages"
    fake.queue(ScriptedReply(text="scripted first"))
    with sync_client(fake) as client:
        first = client.chat.completions.create(model=MODEL, messages=user("a"))
        second = client.chat.completions.create(model=MODEL, messages=user("b"))
    assert first.choices[0].message.content == "scripted first"
    assert second.choices[0].message.content == "1 messages"


async def test_multimodal_request_is_recorded_with_image_part_intact(fake: FakeOpenAI) -> None:
    parts = [
        {"type": "text", "text": "What is on this screenshot?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
    ]
    async with async_client(fake) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": parts}]
        )

    assert completion.choices[0].message.content == "You said: What is on this screenshot?"
    (body,) = fake.chat_requests()
    assert body["messages"][0]["content"] == parts
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len("What is on this screenshot?") // 4 + 85
    assert completion.usage.prompt_tokens == prompt_tokens(body["messages"])


def test_retries_after_two_500s_and_records_every_attempt(fake: FakeOpenAI) -> None:
    # `retry-after: 0` is ignored by the SDK (it falls back to ~0.5 s backoff); the ms header
    # makes the retries immediate. fail_next() uses it by default.
    fake.fail_next(2, status=500, headers={"retry-after-ms": "1"})
    started = time.monotonic()
    with sync_client(fake, max_retries=2) as client:
        completion = client.chat.completions.create(model=MODEL, messages=user("hello"))

    assert time.monotonic() - started < 0.9  # the SDK's own backoff would take >= 1.1 s
    assert completion.choices[0].message.content == "You said: hello"
    assert len(fake.requests) == 3
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests] == ["0", "1", "2"]


async def test_retries_exhausted_raise_the_status_error(fake: FakeOpenAI) -> None:
    fake.fail_next(3, status=429)
    async with async_client(fake, max_retries=1) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=MODEL, messages=user("x"))
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert len(fake.requests) == 2


def test_invalid_request_raises_bad_request(fake: FakeOpenAI) -> None:
    with sync_client(fake, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as invalid:
            client.chat.completions.create(model=MODEL, messages=[])
        fake.queue(ScriptedReply(status=400, text="context_length_exceeded, sort of"))
        with pytest.raises(openai.BadRequestError) as scripted:
            client.chat.completions.create(model=MODEL, messages=user("x"))
    assert invalid.value.status_code == 400
    assert invalid.value.param == "messages"
    assert scripted.value.body == {
        "message": "context_length_exceeded, sort of",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert len(fake.requests) == 2


def test_missing_model_is_a_400(fake: FakeOpenAI) -> None:
    with sync_client(fake, max_retries=0) as client, pytest.raises(openai.BadRequestError):
        client.post("/chat/completions", body={"messages": user("x")}, cast_to=object)


async def test_disconnect_mid_stream_raises_api_connection_error(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(text="one two three four", disconnect_after_chunks=2))
    received: list[str] = []
    async with async_client(fake, max_retries=0) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=user("x"), stream=True)
        with pytest.raises(openai.APIConnectionError) as caught:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two "
    # The SDK wraps httpx2's error for the truncated chunked body.
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)


def test_malformed_stream_line_raises_json_decode_error(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(malformed=True))
    with sync_client(fake, max_retries=0) as client:
        stream = client.chat.completions.create(model=MODEL, messages=user("x"), stream=True)
        # The SDK json.loads() each `data:` line without wrapping the error in an APIError.
        with pytest.raises(json.JSONDecodeError), stream:
            list(stream)


def test_delay_lets_client_timeouts_fire(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(delay=0.3))
    with (
        sync_client(fake, max_retries=0, timeout=0.05) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.chat.completions.create(model=MODEL, messages=user("x"))
    assert len(fake.requests) == 1


async def test_chunk_delay_spaces_out_deltas(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(text="a b c", chunk_delay=0.05))
    contents: list[str] = []
    async with async_client(fake) as client:
        started = time.monotonic()
        stream = await client.chat.completions.create(model=MODEL, messages=user("x"), stream=True)
        first_byte = time.monotonic() - started
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                contents.append(chunk.choices[0].delta.content)
        total = time.monotonic() - started
    assert contents == ["a ", "b ", "c"]
    # Headers and the role chunk come at once; 3 content chunks + the finish chunk each wait.
    assert first_byte < 0.05 * 4
    assert total >= 0.05 * 4


WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def accumulate_tool_calls(chunks: list[Any]) -> dict[int, dict[str, Any]]:
    """Merge streamed `delta.tool_calls` pieces by index, as a client must."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        if not chunk.choices:
            continue
        for piece in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
            if piece.id:
                call["id"] = piece.id
            if piece.function is not None:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
    return calls


async def test_stream_tool_call_is_parsed_by_the_sdk(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})]))
    async with async_client(fake) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=user("weather in Paris?"),
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]

    calls = accumulate_tool_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["id"] == "call_1"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}

    first = chunks[0].choices[0]
    assert first.delta.role == "assistant" and first.delta.content is None
    assert first.delta.tool_calls is not None
    header = first.delta.tool_calls[0]
    assert header.type == "function" and header.function is not None
    assert header.function.arguments == ""
    argument_chunks = [c for c in chunks[1:] if c.choices and c.choices[0].delta.tool_calls]
    assert len(argument_chunks) >= 3
    for c in argument_chunks:
        (piece,) = c.choices[0].delta.tool_calls or []
        assert piece.index == 0 and piece.id is None and piece.type is None
        assert piece.function is not None and piece.function.name is None
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)

    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "tool_calls" and set(finish[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    (body,) = fake.chat_requests()
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == "auto"
    assert fake.requests[0].tool_calls_without_tools is False


async def test_non_stream_tool_call_and_tool_result_round_trip(fake: FakeOpenAI) -> None:
    fake.queue(
        ScriptedReply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Zürich", "n": 2})])
    )
    async with async_client(fake) as client:
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=user("weather?"),
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id == "call_1"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Zürich", "n": 2}

        # The follow-up turn (assistant tool_calls + tool result) is accepted and answered.
        followup = await client.chat.completions.create(
            model=MODEL,
            messages=[
                *user("weather?"),
                choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
                {"role": "user", "content": "thanks"},
            ],
            tools=[WEATHER_TOOL],
        )
    assert followup.choices[0].message.content == "You said: thanks"
    assert followup.choices[0].finish_reason == "stop"
    assert followup.choices[0].message.tool_calls is None
    first, second = fake.chat_requests()
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert second["messages"][2]["tool_call_id"] == "call_1"


async def test_text_and_several_tool_calls_in_one_reply(fake: FakeOpenAI) -> None:
    reply = ScriptedReply(
        text="Let me check both.",
        tool_calls=[
            ScriptedToolCall("get_weather", {"city": "Oslo"}, id="call_abc"),
            ScriptedToolCall("get_weather", '{"city": "Rome", "unit": "C"}'),
        ],
    )
    fake.queue(reply, reply)
    async with async_client(fake) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=user("x"), tools=[WEATHER_TOOL], stream=True
        )
        chunks = [chunk async for chunk in stream]
        completion = await client.chat.completions.create(
            model=MODEL, messages=user("x"), tools=[WEATHER_TOOL]
        )

    # Stream: opening role chunk, content deltas, then the calls in index order.
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    kinds = [
        "content" if c.choices[0].delta.content else "tool" if c.choices[0].delta.tool_calls else ""
        for c in chunks[1:-1]
    ]
    assert kinds == sorted(kinds) and kinds[0] == "content" and kinds[-1] == "tool"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Let me check both."
    calls = accumulate_tool_calls(chunks)
    assert [calls[i]["id"] for i in (0, 1)] == ["call_abc", "call_1"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    assert calls[1]["arguments"] == '{"city": "Rome", "unit": "C"}'  # a string is sent verbatim
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me check both."
    assert [(c.id, c.function.name) for c in message.tool_calls or []] == [
        ("call_abc", "get_weather"),
        ("call_2", "get_weather"),
    ]
    assert json.loads((message.tool_calls or [])[1].function.arguments)["unit"] == "C"


def test_tool_calls_without_tools_are_sent_and_flagged(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(tool_calls=[ScriptedToolCall("lookup")]))
    with sync_client(fake) as client:
        completion = client.chat.completions.create(model=MODEL, messages=user("x"))
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {}
    assert fake.requests[0].tool_calls_without_tools is True
    assert "tools" not in fake.chat_requests()[0]


async def test_disconnect_counts_tool_call_chunks(fake: FakeOpenAI) -> None:
    fake.queue(
        ScriptedReply(
            tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})],
            disconnect_after_chunks=1,
        )
    )
    received: list[Any] = []
    async with async_client(fake, max_retries=0) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=user("x"), stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                received.append(chunk)
    # The opening chunk (role + call header) and one argument piece arrived.
    assert len(received) == 2
    assert accumulate_tool_calls(received)[0]["arguments"] == '{"'


def test_embeddings_default_base64_decode_and_similarity(fake: FakeOpenAI) -> None:
    texts = [
        "How do I reset my password?",
        "how can I reset the password",
        "Shipping to Canada takes five days",
    ]
    with sync_client(fake) as client:
        result = client.embeddings.create(model="text-embedding-3-small", input=texts)

    # The SDK asks for base64 by default and decodes it back into floats.
    assert fake.requests[0].json is not None
    assert fake.requests[0].json["encoding_format"] == "base64"
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(len(v) == 1536 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert result.usage.prompt_tokens == sum(len(t) // 4 for t in texts)


async def test_embeddings_float_format_and_dimensions(fake: FakeOpenAI) -> None:
    async with async_client(fake) as client:
        floats = await client.embeddings.create(
            model="text-embedding-3-small",
            input="Refund policy",
            dimensions=256,
            encoding_format="float",
        )
        raw = await client.embeddings.with_raw_response.create(
            model="text-embedding-3-small",
            input="refund POLICY",
            dimensions=256,
            encoding_format="base64",
        )
    assert len(floats.data[0].embedding) == 256
    # Explicit base64 is returned untouched by the SDK: little-endian float32.
    encoded = raw.parse().data[0].embedding
    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<256f", base64.b64decode(encoded)))
    # Same words, different case: the same vector (up to float32 rounding).
    assert cosine(decoded, floats.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


async def test_transcription_returns_transcript_and_records_upload(fake: FakeOpenAI) -> None:
    audio = b"OggS\x00\x02fake-opus-bytes"
    async with async_client(fake) as client:
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=("voice-note.ogg", audio, "audio/ogg")
        )
        fake.transcript = "Custom words."
        text = await client.audio.transcriptions.create(
            model="whisper-1", file=("v.mp3", b"ID3", "audio/mpeg"), response_format="text"
        )

    assert result.text == DEFAULT_TRANSCRIPT
    assert text == "Custom words."
    first, second = fake.requests
    assert first.path == "/v1/audio/transcriptions"
    assert first.json is None
    assert first.form == {"model": "whisper-1"}
    assert first.files == {"file": ("voice-note.ogg", audio, "audio/ogg")}
    assert first.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert second.form == {"model": "whisper-1", "response_format": "text"}


def test_models_and_unknown_routes(fake: FakeOpenAI) -> None:
    with sync_client(fake, max_retries=0) as client:
        assert "gpt-4o-mini" in [m.id for m in client.models.list()]
        with pytest.raises(openai.NotFoundError) as caught:
            client.get("/no/such/route", cast_to=object)
    assert "Invalid URL (GET /v1/no/such/route)" in str(caught.value)
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/no/such/route"]


def test_reset_restores_defaults(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: "custom"
    fake.transcript = "other"
    fake.default_delay = 5.0
    fake.fail_next(1)
    with sync_client(fake, max_retries=0) as client:
        client.models.list()
    fake.reset()
    assert fake.requests == []
    assert fake.transcript == DEFAULT_TRANSCRIPT
    assert fake.default_delay == 0.0
    with sync_client(fake, max_retries=0) as client:
        completion = client.chat.completions.create(model=MODEL, messages=user("ok"))
    assert completion.choices[0].message.content == "You said: ok"


def test_serves_a_subprocess(fake: FakeOpenAI) -> None:
    # Plain urllib keeps the child fast; what matters is that the server thread answers another
    # process while this one blocks in subprocess.run.
    child = textwrap.dedent(
        """
        import json, os, urllib.request
        request = urllib.request.Request(
            os.environ["OPENAI_BASE_URL"] + "/chat/completions",
            data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "cli"}]})
            .encode(),
            headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
                     "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            print(json.load(response)["choices"][0]["message"]["content"])
        """
    )
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-from-cli"}
    done = subprocess.run(
        [sys.executable, "-c", child],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert done.stdout.strip() == "You said: cli"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-from-cli"


def test_start_stop_lifecycle() -> None:
    fake = FakeOpenAI()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    with fake:
        url = fake.base_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        # A request still in flight when the server stops must not hang or leak.
        fake.queue(ScriptedReply(delay=5.0))
        with (
            sync_client(fake, max_retries=0, timeout=0.05) as client,
            pytest.raises(openai.APITimeoutError),
        ):
            client.chat.completions.create(model=MODEL, messages=user("x"))
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 2.0  # in-flight handlers get a short grace, not 5 s
    fake.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = fake.base_url
