"""The model server's bad days, as a user sees them: the real openai SDK (unpatched) against the
fake server, through the whole engine. Whatever the server does (rate limits, 5xx, hangs, cut or
garbled streams, a bad key) the user gets a polite reply, never a trace; a fallback answers where
one is configured; the SDK's own retries honour Retry-After without multiplying down the chain;
and a model that keeps failing is skipped by its breaker."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot import replies
from bot.app import Hub
from bot.engine import Outcome, Result
from bot.llm import ChatModel, FailureKind, ModelError
from bot.model import ReplyMode
from tests.conftest import make_settings, question, write_config
from tests.fakes.openai_server import FAST_RETRY_HEADERS, FakeOpenAI, ScriptedReply
from tests.fakes.recording_channel import RecordingChannel

PRIMARY, FALLBACK = "gpt-4o", "gpt-4o-mini"
TIMEOUT = 0.5  # limits.model_timeout_seconds in these tests

# What a reply must never show: internals, the key, the server's own error text.
LEAKS = ("traceback", "exception", "apierror", "error code", "status_code", "invalid_api_key",
         "incorrect api key", "sk-", "openai", "httpx", "127.0.0.1", "{'error'", '{"error"',
         "server had an error", "rate limit reached")

HubFactory = Callable[..., Any]


@pytest.fixture
async def make_hub(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[HubFactory]:
    """A hub on the fake server with a short model timeout; `fallback=False`: the primary only.
    Retrieval is full-text only: every request the fake sees is a chat request, and the
    embedding client (which `Hub.close` does not close) leaves no task behind."""
    hubs: list[Hub] = []

    async def make(*, fallback: bool = True, seconds: float = TIMEOUT, config: str = "") -> Hub:
        path = write_config(tmp_path, f"limits:\n  model_timeout_seconds: {seconds}\n{config}")
        settings = make_settings(tmp_path, fake_openai, config_file=path, embedding_model="none",
                                 fallback_models=FALLBACK if fallback else "")
        hub = await Hub.create(settings)
        hubs.append(hub)
        # The first question of a process pays one-off costs (imports, opening the index):
        # paid here, so that the tests time the model's part.
        await hub.engine.handle(question("warm up", thread="warm-up"), RecordingChannel())
        fake_openai.reset()
        return hub

    yield make
    for hub in hubs:
        await hub.close()


async def ask(hub: Hub, text: str = "How do I rotate my API key?"
              ) -> tuple[Result, RecordingChannel, float]:
    channel = RecordingChannel()
    started = time.monotonic()
    result = await hub.engine.handle(question(text), channel)
    return result, channel, time.monotonic() - started


def chat(fake: FakeOpenAI) -> list[tuple[str, float]]:
    """(model, arrival time) of every chat request, in order."""
    return [(str((r.json or {}).get("model")), r.received_at) for r in list(fake.requests)
            if r.path == "/v1/chat/completions"]


def models(fake: FakeOpenAI) -> list[str]:
    return [model for model, _ in chat(fake)]


def shown(channel: RecordingChannel) -> str:
    """The one answer the user ended up with (notices posted beside it excluded)."""
    assert len(channel.streams) <= 1
    assert channel.shown, "the user got no reply at all"
    reply = channel.streams[0].final if channel.streams else channel.shown[-1]
    assert reply is not None, "the answer's stream was never finished"
    return reply.text


def assert_polite(text: str) -> None:
    assert text.strip(), "an empty reply"
    lowered = text.lower()
    leaked = [leak for leak in LEAKS if leak in lowered]
    assert not leaked, f"the reply shows internals {leaked}: {text!r}"


def assert_answered_by_fallback(fake: FakeOpenAI, result: Result, text: str) -> None:
    assert result.outcome is Outcome.ANSWERED, result
    assert models(fake)[-1] == FALLBACK
    assert text == "From the fallback."


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n"
                    for e in events)


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"role": "assistant", "content": ""} if content is None else {"content": content}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": PRIMARY,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


# -- rate limits: the SDK's retry waits what the server asks ------------------------------------

@pytest.mark.parametrize(("header", "low", "high"), [
    pytest.param(lambda: "1", 0.9, 1.6, id="seconds"),
    pytest.param(lambda: "0.4", 0.35, 0.9, id="fractional-seconds"),
    # An HTTP-date has whole seconds: "now + 3 s" truncated is a wait of 2-3 s.
    pytest.param(lambda: email.utils.formatdate(time.time() + 3, usegmt=True), 1.8, 3.4,
                 id="http-date"),
])
async def test_429_with_retry_after_waits_that_long_then_answers(
        make_hub: HubFactory, fake_openai: FakeOpenAI, header: Callable[[], str],
        low: float, high: float) -> None:
    hub = await make_hub(seconds=10)
    fake_openai.fail_next(1, status=429, headers={"retry-after": header()})
    result, channel, _ = await ask(hub)
    (first, at_first), (second, at_second) = chat(fake_openai)
    assert first == second == PRIMARY  # the primary itself answered, after the wait
    assert low <= at_second - at_first <= high
    assert result.outcome is Outcome.ANSWERED
    assert shown(channel).startswith("You said:")


async def test_429_without_retry_after_backs_off_with_jitter(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub(seconds=10)
    fake_openai.fail_next(2, status=429, headers={})
    result, _, _ = await ask(hub)
    times = [at for _, at in chat(fake_openai)]
    assert models(fake_openai) == [PRIMARY] * 3
    first_wait, second_wait = times[1] - times[0], times[2] - times[1]
    assert 0.3 <= first_wait <= 0.8  # 0.5 s less up to 25 % jitter
    assert 0.7 <= second_wait <= 1.4  # then 1 s less up to 25 %
    assert result.outcome is Outcome.ANSWERED


async def test_a_retry_after_beyond_two_minutes_is_not_waited_for(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    """The SDK gives up at once on a wait over 120 s: the next model answers now."""
    hub = await make_hub(seconds=10)
    fake_openai.fail_next(1, status=429, headers={"retry-after": "600"})
    fake_openai.queue(ScriptedReply(text="From the fallback."))
    result, channel, elapsed = await ask(hub)
    assert models(fake_openai) == [PRIMARY, FALLBACK]
    assert_answered_by_fallback(fake_openai, result, shown(channel))
    assert elapsed < 1.0


async def test_rate_limited_past_the_retries_falls_back(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    fake_openai.fail_next(3, status=429)
    fake_openai.queue(ScriptedReply(text="From the fallback."))
    result, channel, _ = await ask(hub)
    assert models(fake_openai) == [PRIMARY] * 3 + [FALLBACK]
    assert_answered_by_fallback(fake_openai, result, shown(channel))


async def test_rate_limited_with_no_fallback_says_so_politely(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub(fallback=False)
    fake_openai.fail_next(3, status=429)
    result, channel, _ = await ask(hub)
    assert result.outcome is Outcome.MODEL_FAILED
    text = shown(channel)
    assert_polite(text)
    assert text == replies.model_failed(FailureKind.RATE_LIMITED)


# -- server errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried_then_the_fallback_answers(
        make_hub: HubFactory, fake_openai: FakeOpenAI, status: int) -> None:
    hub = await make_hub()
    fake_openai.fail_next(3, status=status)
    fake_openai.queue(ScriptedReply(text="From the fallback."))
    result, channel, _ = await ask(hub)
    assert models(fake_openai) == [PRIMARY] * 3 + [FALLBACK]
    assert_answered_by_fallback(fake_openai, result, shown(channel))


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_with_no_fallback_end_in_an_apology(
        make_hub: HubFactory, fake_openai: FakeOpenAI, status: int) -> None:
    hub = await make_hub(fallback=False)
    fake_openai.fail_next(3, status=status)
    result, channel, _ = await ask(hub)
    assert result.outcome is Outcome.MODEL_FAILED
    assert_polite(shown(channel))
    assert shown(channel) == replies.model_failed(FailureKind.UNAVAILABLE)


async def test_retries_do_not_multiply_down_the_chain(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    """The SDK's two retries per model, nothing on top: 3 + 3 requests for two models, and the
    user hears back within the SDK's backoff (0.5 s + 1 s, less jitter) per model."""
    hub = await make_hub(seconds=10)
    for model in (PRIMARY, FALLBACK):
        fake_openai.model_faults[model] = ScriptedReply(status=503)
    result, channel, elapsed = await ask(hub)
    assert models(fake_openai) == [PRIMARY] * 3 + [FALLBACK] * 3
    assert elapsed < 2 * 1.5 + 1.5
    assert result.outcome is Outcome.MODEL_FAILED
    assert_polite(shown(channel))


# -- a model that does not answer in time ---------------------------------------------------------

async def test_a_hung_primary_costs_one_timeout_then_the_fallback_answers(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    fake_openai.model_faults[PRIMARY] = ScriptedReply(delay=5)
    fake_openai.queue(ScriptedReply(text="From the fallback."))
    result, channel, elapsed = await ask(hub)
    assert_answered_by_fallback(fake_openai, result, shown(channel))
    # Not three timeouts and two backoffs (about 3 s here, 3 minutes at the 60 s default).
    assert models(fake_openai) == [PRIMARY, FALLBACK]
    assert TIMEOUT <= elapsed < TIMEOUT + 0.7


async def test_every_model_hung_ends_in_an_apology_within_one_timeout_each(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    for model in (PRIMARY, FALLBACK):
        fake_openai.model_faults[model] = ScriptedReply(delay=5)
    result, channel, elapsed = await ask(hub)
    assert result.outcome is Outcome.MODEL_FAILED
    assert_polite(shown(channel))
    assert 2 * TIMEOUT <= elapsed < 2 * TIMEOUT + 0.8


async def test_a_stream_that_stalls_before_its_first_token_falls_back(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    """Headers at once, then silence: the read timeout ends it; no text was shown yet."""
    hub = await make_hub()
    fake_openai.queue(ScriptedReply(text="Too slow", chunk_delay=3),
                      ScriptedReply(text="From the fallback."))
    result, channel, elapsed = await ask(hub)
    assert models(fake_openai) == [PRIMARY, FALLBACK]
    assert_answered_by_fallback(fake_openai, result, shown(channel))
    assert elapsed < TIMEOUT * 2 + 0.7


# -- streams cut or garbled ------------------------------------------------------------------------

CUT_TEXT = "Open the settings page and then choose the security tab to continue"


def assert_cut_off(result: Result, channel: RecordingChannel, fake: FakeOpenAI,
                   pieces: str) -> None:
    text = shown(channel)
    assert text.startswith(pieces.strip())
    assert text.endswith(replies.CUT_OFF)
    assert channel.streams[0].deltas, "the partial answer was streamed as it came"
    assert models(fake) == [PRIMARY]  # the user has seen part: no other model starts over
    assert result.outcome is Outcome.MODEL_FAILED
    assert_polite(text)


async def test_a_stream_cut_midway_shows_the_part_marked_as_cut_off(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    fake_openai.queue(ScriptedReply(text=CUT_TEXT, disconnect_after_chunks=4))
    result, channel, _ = await ask(hub)
    assert_cut_off(result, channel, fake_openai, "Open the settings page")


async def test_a_stream_cut_before_any_text_falls_back(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    fake_openai.queue(ScriptedReply(text=CUT_TEXT, disconnect_after_chunks=0),
                      ScriptedReply(text="From the fallback."))
    result, channel, _ = await ask(hub)
    assert models(fake_openai) == [PRIMARY, FALLBACK]  # a broken stream is not retried
    assert_answered_by_fallback(fake_openai, result, shown(channel))


async def test_a_stream_that_just_ends_midway_is_cut_off_not_complete(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    """The body ends cleanly but without finish_reason or [DONE]: half an answer, not all."""
    hub = await make_hub()
    fake_openai.queue(ScriptedReply(text=CUT_TEXT, end_after_chunks=3))
    result, channel, _ = await ask(hub)
    assert_cut_off(result, channel, fake_openai, "Open the settings")


async def test_an_error_event_midway_is_cut_off(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    fake_openai.queue(ScriptedReply(text=CUT_TEXT, error_after_chunks=3))
    result, channel, _ = await ask(hub)
    assert_cut_off(result, channel, fake_openai, "Open the settings")


async def test_a_truncated_data_line_after_some_text_is_cut_off(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    body = sse(chunk(), chunk("Open the "), chunk("settings ")) + b'data: {"id":"chatcmpl-1","cho'
    fake_openai.queue(ScriptedReply(body=body))
    result, channel, _ = await ask(hub)
    assert_cut_off(result, channel, fake_openai, "Open the settings")


GARBLED = {
    "malformed-json-chunk": ScriptedReply(text="never shown", malformed=True),
    "malformed-json-after-opening": ScriptedReply(body=sse(chunk(), "{this is not json")),
    "empty-stream-no-done": ScriptedReply(body=b""),
    "only-the-opening-chunk": ScriptedReply(text="never shown", end_after_chunks=0),
    "error-event-first": ScriptedReply(text="never shown", error_after_chunks=0),
    "error-event-without-message": ScriptedReply(body=sse(chunk(), {"error": {}})),
    "truncated-data-line": ScriptedReply(body=b'data: {"id":"chatcmpl-1","choices":[{"delta'),
    "html-error-page-with-200": ScriptedReply(
        body=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        headers={"Content-Type": "text/html"}),
    "plain-json-instead-of-a-stream": ScriptedReply(
        body=json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "never shown"},
             "finish_reason": "stop"}]}).encode(),
        headers={"Content-Type": "application/json"}),
    "json-chunks-of-the-wrong-shape": ScriptedReply(body=sse({"hello": "world"}, "[DONE]")),
    "done-without-an-answer": ScriptedReply(body=sse("[DONE]")),
}


@pytest.mark.parametrize("garbled", list(GARBLED.values()), ids=list(GARBLED))
async def test_a_garbled_stream_before_any_text_falls_back(
        make_hub: HubFactory, fake_openai: FakeOpenAI, garbled: ScriptedReply) -> None:
    hub = await make_hub()
    fake_openai.queue(garbled, ScriptedReply(text="From the fallback."))
    result, channel, _ = await ask(hub)
    assert models(fake_openai) == [PRIMARY, FALLBACK]
    assert_answered_by_fallback(fake_openai, result, shown(channel))


@pytest.mark.parametrize("garbled", list(GARBLED.values()), ids=list(GARBLED))
async def test_a_garbled_stream_with_no_fallback_ends_in_an_apology(
        make_hub: HubFactory, fake_openai: FakeOpenAI, garbled: ScriptedReply) -> None:
    hub = await make_hub(fallback=False)
    fake_openai.queue(garbled)
    result, channel, _ = await ask(hub)
    assert result.outcome is Outcome.MODEL_FAILED
    assert_polite(shown(channel))
    assert shown(channel) == replies.model_failed(FailureKind.BROKEN_STREAM)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "text/html"])
async def test_a_good_stream_under_the_wrong_content_type_is_still_read(
        make_hub: HubFactory, fake_openai: FakeOpenAI, content_type: str) -> None:
    """The SDK reads a streamed answer whatever its content type says (as the API's proxies
    sometimes mislabel it); what matters is that the events are complete."""
    hub = await make_hub()
    fake_openai.queue(ScriptedReply(text="A complete answer.",
                                    headers={"Content-Type": content_type}))
    result, channel, _ = await ask(hub)
    assert result.outcome is Outcome.ANSWERED
    assert shown(channel) == "A complete answer."
    assert models(fake_openai) == [PRIMARY]


# -- a bad key ------------------------------------------------------------------------------------

async def test_a_bad_key_is_not_retried_and_nothing_leaks(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()  # the fallback shares the primary's key: no use asking it
    fake_openai.fail_next(1, status=401)
    result, channel, elapsed = await ask(hub)
    assert models(fake_openai) == [PRIMARY]
    assert result.outcome is Outcome.MODEL_FAILED
    text = shown(channel)
    assert_polite(text)
    assert fake_openai.api_key not in text
    assert elapsed < 1.0


async def test_a_bad_key_still_tries_another_endpoint_with_its_own_key(
        make_hub: HubFactory, fake_openai: FakeOpenAI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", "local-secret")
    hub = await make_hub(config=f"fallbacks:\n  - model: local-llama\n"
                                f"    base_url: {fake_openai.base_url}\n"
                                f"    api_key_env: LOCAL_LLM_KEY\n")
    fake_openai.fail_next(1, status=401)
    fake_openai.queue(ScriptedReply(text="From the local model."))
    result, channel, _ = await ask(hub)
    assert models(fake_openai) == [PRIMARY, "local-llama"]  # gpt-4o-mini shares the bad key
    assert result.outcome is Outcome.ANSWERED
    assert shown(channel) == "From the local model."


async def test_a_refused_request_is_not_retried(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub(fallback=False)
    fake_openai.fail_next(1, status=400)
    _, channel, _ = await ask(hub)
    assert models(fake_openai) == [PRIMARY]
    assert_polite(shown(channel))
    assert shown(channel) == replies.model_failed(FailureKind.REJECTED)


# -- the breaker ----------------------------------------------------------------------------------

async def test_the_breaker_opens_after_repeated_failures_and_answers_keep_coming(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    assert hub.model is not None
    primary = hub.model.targets[0]
    fake_openai.model_faults[PRIMARY] = ScriptedReply(status=500, headers=FAST_RETRY_HEADERS)
    for turn in range(3):  # the default threshold
        result, channel, _ = await ask(hub, f"question {turn}")
        assert result.outcome is Outcome.ANSWERED
        assert shown(channel).startswith("You said:")
    assert primary.breaker.open
    before = len(models(fake_openai))
    result, _, _ = await ask(hub, "and now?")
    assert models(fake_openai)[before:] == [FALLBACK]  # no time lost on the broken primary
    assert result.outcome is Outcome.ANSWERED


async def test_with_every_breaker_open_the_user_hears_at_once(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    hub = await make_hub()
    for model in (PRIMARY, FALLBACK):
        fake_openai.model_faults[model] = ScriptedReply(status=500, headers=FAST_RETRY_HEADERS)
    for turn in range(3):
        await ask(hub, f"question {turn}")
    before = len(models(fake_openai))
    result, channel, elapsed = await ask(hub, "anyone?")
    assert models(fake_openai)[before:] == []
    assert result.outcome is Outcome.MODEL_FAILED
    assert_polite(shown(channel))
    assert elapsed < 0.5


# -- summaries (complete) fail the same way, never with an AttributeError --------------------------

@pytest.mark.parametrize("garbled", [
    ScriptedReply(body=b"<html>oops</html>", headers={"Content-Type": "text/html"}),
    ScriptedReply(body=b'{"id": "x", "object": "chat.completion", "choices": []}',
                  headers={"Content-Type": "application/json"}),
    ScriptedReply(malformed=True),
    ScriptedReply(delay=5),
], ids=["html", "no-choices", "malformed", "hung"])
async def test_a_summary_from_a_garbled_server_is_a_model_error(
        make_hub: HubFactory, fake_openai: FakeOpenAI, garbled: ScriptedReply) -> None:
    hub = await make_hub(fallback=False)
    assert isinstance(hub.model, ChatModel)
    fake_openai.model_faults[PRIMARY] = garbled
    started = time.monotonic()
    try:
        text, _usage = await hub.model.complete([{"role": "user", "content": "hi"}],
                                                max_tokens=50)
    except ModelError:
        pass
    else:
        assert text == ""  # an answer without choices is an empty summary, not a crash
    assert time.monotonic() - started < TIMEOUT + 0.7


async def test_the_stored_answer_records_the_failure_for_operators(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    """The user gets an apology; the answer's row says what broke, for the operator."""
    hub = await make_hub(fallback=False)
    fake_openai.queue(ScriptedReply(body=b""))
    result, channel, _ = await ask(hub)
    rows = await hub.store.messages(result.conversation_id or 0)
    answer = rows[-1]
    assert answer.role == "assistant" and answer.status == "failed"
    assert answer.error.startswith("IncompleteStream")
    final = channel.streams[0].final
    assert final is not None and final.mode is ReplyMode.NOTICE


async def test_retries_and_their_waits_count_against_the_model_timeout(
        make_hub: HubFactory, fake_openai: FakeOpenAI) -> None:
    """A primary that asks for more patience than a model is given is left for the next one
    once its time is up, without waiting out the rest."""
    hub = await make_hub(seconds=1.0)
    fake_openai.model_faults[PRIMARY] = ScriptedReply(status=429, headers={"retry-after": "5"})
    fake_openai.queue(ScriptedReply(text="From the fallback."))
    result, channel, elapsed = await ask(hub)
    assert models(fake_openai) == [PRIMARY, FALLBACK]
    assert_answered_by_fallback(fake_openai, result, shown(channel))
    assert 1.0 <= elapsed < 1.8
