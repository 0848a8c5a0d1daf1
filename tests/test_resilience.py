"""The model's bad days: fallbacks down the chain, a circuit breaker, and answers from the
knowledge base when no model can write one. The real openai SDK against the fake server."""

from __future__ import annotations

from pathlib import Path

from bot.app import Hub
from bot.engine import Engine, Outcome
from bot.kb.documents import Chunk, Hit
from bot.kb.knowledge import Retrieval
from bot.llm import Breaker
from bot.model import ConversationKey, ReplyMode
from tests.conftest import make_settings, question, write_config
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.recording_channel import RecordingChannel


def models(fake: FakeOpenAI) -> list[str]:
    return [request["model"] for request in fake.chat_requests()]


async def test_a_failing_primary_falls_back_to_the_next_model(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai,
                                         fallback_models="gpt-4o-mini, gpt-4.1-mini"))
    try:
        fake_openai.fail_next(3, status=503)  # the primary and the SDK's two retries
        fake_openai.queue(ScriptedReply(text="Answered by the fallback."))
        channel = RecordingChannel()
        result = await hub.engine.handle(question("is anyone there?"), channel)
        assert result.outcome is Outcome.ANSWERED
        assert channel.shown[-1].text == "Answered by the fallback."
        assert models(fake_openai) == ["gpt-4o"] * 3 + ["gpt-4o-mini"]
        rows = await hub.store.messages(result.conversation_id or 0)
        assert rows[-1].model == "gpt-4o-mini"  # the answer says which model wrote it
    finally:
        await hub.close()


async def test_a_broken_model_is_skipped_until_its_cooldown_ends(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai, fallback_models="gpt-4o-mini"))
    try:
        now = [0.0]
        assert hub.model is not None
        primary = hub.model.targets[0]
        primary.breaker = Breaker(threshold=2, cooldown=30, clock=lambda: now[0])
        for _ in range(2):
            fake_openai.fail_next(3, status=500)
            await hub.engine.handle(question("hello"), RecordingChannel())
        assert primary.breaker.open
        before = len(fake_openai.chat_requests())
        await hub.engine.handle(question("hello again"), RecordingChannel())
        assert models(fake_openai)[before:] == ["gpt-4o-mini"]  # no time lost on the primary
        now[0] = 31.0
        await hub.engine.handle(question("and now?"), RecordingChannel())
        assert models(fake_openai)[-1] == "gpt-4o" and not primary.breaker.open
    finally:
        await hub.close()


async def test_another_openai_compatible_endpoint_from_the_config(
        tmp_path: Path, fake_openai: FakeOpenAI, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LOCAL_LLM_KEY", "local-secret")
    config = write_config(tmp_path, f"fallbacks:\n  - model: local-llama\n"
                                    f"    base_url: {fake_openai.base_url}\n"
                                    f"    api_key_env: LOCAL_LLM_KEY\n")
    hub = await Hub.create(make_settings(tmp_path, fake_openai, config_file=config))
    try:
        fake_openai.fail_next(3, status=500)
        fake_openai.queue(ScriptedReply(text="From the local model."))
        channel = RecordingChannel()
        await hub.engine.handle(question("hello"), channel)
        assert channel.shown[-1].text == "From the local model."
        assert models(fake_openai)[-1] == "local-llama"
        assert fake_openai.requests[-1].headers.get("authorization") == "Bearer local-secret"
    finally:
        await hub.close()


class Docs:
    async def retrieve(self, question: str, key: ConversationKey) -> Retrieval:
        chunk = Chunk(source="docs", doc_id="passwords.md", index=0, title="Passwords",
                      url="https://help.example.com/passwords", section="Reset",
                      text="Open Settings, then Security, then Reset password.")
        return Retrieval(passages=(Hit(chunk=chunk, score=1.0, similarity=None, bm25=3.0),))


async def test_with_every_model_down_the_documentation_answers(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai, fallback_models="gpt-4o-mini"))
    try:
        assert hub.model is not None
        engine = Engine(hub.store, hub.behaviour, hub.model, Docs())
        fake_openai.fail_next(6, status=500)
        channel = RecordingChannel()
        result = await engine.handle(question("how do I reset my password?"), channel)
        reply = channel.shown[-1]
        assert reply.mode is ReplyMode.RETRIEVAL_ONLY
        assert "can't write an answer right now" in reply.text
        assert "Open Settings, then Security" in reply.text
        assert reply.citations[0].url == "https://help.example.com/passwords"
        assert result.outcome is Outcome.MODEL_FAILED  # counted as a failure all the same
    finally:
        await hub.close()
