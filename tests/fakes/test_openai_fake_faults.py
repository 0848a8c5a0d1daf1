"""The fake OpenAI server's garbled answers, per-model faults and moderations, driven by the
real `openai` SDK: what the SDK makes of each is what the bot's own fault tests rely on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset()
    return server


def client(fake: FakeOpenAI, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, **kwargs)


def stream(fake: FakeOpenAI, model: str = MODEL) -> tuple[list[str], list[str | None]]:
    """(content pieces, finish reasons) of one streamed answer."""
    pieces: list[str] = []
    reasons: list[str | None] = []
    with client(fake, max_retries=0).chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "hi"}]) as chunks:
        for chunk in chunks:
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                reasons.append(choice.finish_reason)
    return pieces, reasons


def test_end_after_chunks_ends_cleanly_without_a_finish_reason(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(text="one two three four", end_after_chunks=2))
    pieces, reasons = stream(fake)
    assert "".join(pieces) == "one two "
    assert not any(reasons)


def test_error_after_chunks_raises_the_api_error_in_the_stream(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(text="one two three", error_after_chunks=1, error_message="Boom"))
    with pytest.raises(openai.APIError, match="Boom"):
        stream(fake)


def test_a_raw_body_is_sent_as_is(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(body=b""))
    assert stream(fake) == ([], [])
    fake.queue(ScriptedReply(body=b"<html>oops</html>", headers={"Content-Type": "text/html"}))
    http = client(fake).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert http.status_code == 200
    assert http.headers["content-type"] == "text/html"
    assert http.http_response.text == "<html>oops</html>"


def test_a_good_stream_may_carry_another_content_type(fake: FakeOpenAI) -> None:
    fake.queue(ScriptedReply(text="all of it", headers={"Content-Type": "application/json"}))
    pieces, reasons = stream(fake)
    assert "".join(pieces) == "all of it" and reasons[-1] == "stop"


def test_model_faults_hit_every_request_for_that_model_only(fake: FakeOpenAI) -> None:
    fake.model_faults["gpt-4o"] = ScriptedReply(status=503, headers={"retry-after-ms": "1"})
    fake.queue(ScriptedReply(text="queued"))
    with pytest.raises(openai.InternalServerError):
        client(fake, max_retries=2).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    pieces, _ = stream(fake)  # another model: the queue still holds its reply
    assert "".join(pieces) == "queued"
    assert [r.json["model"] for r in fake.requests if r.json] == ["gpt-4o"] * 3 + [MODEL]
    times = [r.received_at for r in fake.requests]
    assert times == sorted(times)
    fake.reset()
    assert fake.model_faults == {}


def test_moderations_flag_the_marker_word(fake: FakeOpenAI) -> None:
    result = client(fake).moderations.create(model="omni-moderation-latest",
                                             input=["hello", "you are a flagme person"])
    clean, flagged = result.results
    assert not clean.flagged and flagged.flagged
    assert flagged.categories.harassment and not flagged.categories.violence
    assert result.model == "omni-moderation-latest"
    body = fake.requests[-1].json
    assert body == {"model": "omni-moderation-latest",
                    "input": ["hello", "you are a flagme person"]}


def test_moderation_marker_categories_and_failures_are_configurable(fake: FakeOpenAI) -> None:
    fake.moderation_marker = "zap"
    fake.moderation_categories = ["violence", "self-harm/intent"]
    result = client(fake).moderations.create(input="ZAP it")
    categories = result.results[0].categories.to_dict()
    assert sorted(name for name, hit in categories.items() if hit) == [
        "self-harm/intent", "violence"]
    fake.moderation_fault = ScriptedReply(status=503)
    with pytest.raises(openai.InternalServerError):
        client(fake, max_retries=0).moderations.create(input="zap")
    fake.moderation_fault = ScriptedReply(body=b"{not json")
    with pytest.raises(json.JSONDecodeError):
        client(fake, max_retries=0).moderations.create(input="zap")
    fake.moderation_fault = ScriptedReply(delay=2)
    with pytest.raises(openai.APITimeoutError):
        client(fake, max_retries=0, timeout=0.2).moderations.create(input="zap")
    fake.reset()
    assert not client(fake).moderations.create(input="zap").results[0].flagged


def test_moderation_of_an_invalid_input_is_a_400(fake: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client(fake).moderations.create(input=json.loads("[]"))
