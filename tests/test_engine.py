"""The engine end to end: the real openai SDK against the fake model server, over a socket."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import event

from bot.app import Hub
from bot.engine import Engine, Outcome
from bot.model import Attachment, Reply, ReplyMode
from tests.conftest import make_settings, question, write_config
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.recording_channel import RecordingChannel, RecordingStream

FAST_RETRY = {"retry-after-ms": "1"}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


async def test_answer_is_streamed_in_pieces_and_recorded(hub: Hub, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Reset it from Settings, then Security, then Reset."))
    channel = RecordingChannel()

    result = await hub.engine.handle(question("How do I reset my password?"), channel)

    assert result.outcome is Outcome.ANSWERED
    [stream] = channel.streams
    assert len(stream.deltas) > 3
    assert "".join(stream.deltas) == "Reset it from Settings, then Security, then Reset."
    assert stream.final is not None and stream.final.text == "".join(stream.deltas)
    assert stream.final.mode is ReplyMode.MODEL
    request = fake_openai.chat_requests()[-1]
    assert request["stream"] is True and request["model"] == "gpt-4o"
    assert request["messages"][0]["role"] == "system"
    assert "Ada" in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "How do I reset my password?"}
    assert result.conversation_id is not None
    rows = await hub.store.messages(result.conversation_id)
    assert [(r.role, r.status) for r in rows] == [("user", "ok"), ("assistant", "ok")]
    answer = rows[1]
    assert answer.text == stream.final.text and answer.model == "gpt-4o"
    assert answer.tokens_in > 0 and answer.tokens_out == len(stream.deltas)
    assert answer.cost_usd > 0 and answer.latency_ms is not None


async def test_second_turn_carries_the_first(hub: Hub, fake_openai: FakeOpenAI) -> None:
    await hub.engine.handle(question("My order number is 4417."), RecordingChannel())
    await hub.engine.handle(question("What was my order number?"), RecordingChannel())
    await hub.engine.handle(question("Unrelated thread", thread="t2"), RecordingChannel())

    second, third = fake_openai.chat_requests()[1:]
    turns = [(m["role"], m["content"]) for m in second["messages"] if m["role"] != "system"]
    assert turns == [("user", "My order number is 4417."),
                     ("assistant", "You said: My order number is 4417."),
                     ("user", "What was my order number?")]
    assert all("4417" not in str(m["content"]) for m in third["messages"][1:])


async def test_image_attachment_reaches_the_model_as_an_image_part(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    async def fetch() -> bytes:
        return PNG

    screenshot = Attachment(name="error.png", content_type="image/png", size=len(PNG),
                            fetch=fetch)
    result = await hub.engine.handle(
        question("What does this error mean?", attachments=(screenshot,)), RecordingChannel())

    assert result.outcome is Outcome.ANSWERED
    content = fake_openai.chat_requests()[-1]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What does this error mean?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(
        PNG).decode()
    [user_row, _] = await hub.store.messages(result.conversation_id or 0)
    assert user_row.attachments == [{"name": "error.png", "content_type": "image/png",
                                     "size": len(PNG), "kind": "image"}]


async def test_oversized_or_unreadable_images_are_skipped_with_a_note(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    async def broken() -> bytes:
        raise ConnectionError("download failed")

    huge = Attachment(name="huge.png", content_type="image/png", size=50 * 1024 * 1024)
    gone = Attachment(name="gone.jpg", content_type="image/jpeg", fetch=broken)
    tiff = Attachment(name="scan.tiff", content_type="image/tiff")
    channel = RecordingChannel()

    await hub.engine.handle(question("Look", attachments=(huge, gone, tiff)), channel)

    assert isinstance(fake_openai.chat_requests()[-1]["messages"][-1]["content"], str)
    final = channel.streams[0].final
    assert final is not None
    for name in ("huge.png", "gone.jpg", "scan.tiff"):
        assert name in final.text


async def test_voice_message_is_transcribed_and_answered(hub: Hub,
                                                         fake_openai: FakeOpenAI) -> None:
    fake_openai.transcript = "How do I export my invoices?"

    async def fetch() -> bytes:
        return b"OggS fake opus bytes"

    voice = Attachment(name="voice.ogg", content_type="audio/ogg", size=20, fetch=fetch)
    result = await hub.engine.handle(question("", attachments=(voice,)), RecordingChannel())

    assert result.outcome is Outcome.ANSWERED
    [upload] = [r for r in fake_openai.requests if r.path.endswith("/audio/transcriptions")]
    assert upload.form["model"] == "gpt-4o-transcribe"
    assert upload.files["file"][0] == "voice.ogg"
    assert upload.files["file"][1] == b"OggS fake opus bytes"
    assert fake_openai.chat_requests()[-1]["messages"][-1]["content"] == (
        "How do I export my invoices?")
    user_row = (await hub.store.messages(result.conversation_id or 0))[0]
    assert user_row.text == "How do I export my invoices?"
    assert user_row.attachments[0]["transcript"] == "How do I export my invoices?"


class RequestCountingChannel(RecordingChannel):
    def __init__(self, fake: FakeOpenAI) -> None:
        super().__init__()
        self._fake = fake
        self._at_start = 0
        self.requests_while_answering = -1

    def _chat_calls(self) -> int:
        return len(self._fake.chat_requests())

    async def stream(self) -> RecordingStream:
        self._at_start = self._chat_calls()
        stream = await super().stream()
        finish = stream.finish

        async def counted(reply: Reply) -> None:
            self.requests_while_answering = self._chat_calls() - self._at_start
            await finish(reply)

        stream.finish = counted  # type: ignore[method-assign]
        return stream


async def test_history_over_budget_is_folded_into_a_stored_summary(
        tmp_path: Path, fake_openai: FakeOpenAI, database_url: str) -> None:
    config = write_config(tmp_path, "limits:\n  history_token_budget: 300\n"
                                    "  rate: {user: {per_minute: 600, burst: 100}}\n")
    hub = await Hub.create(make_settings(tmp_path, fake_openai, config_file=config,
                                         database_url=database_url))
    try:
        def responder(body: dict) -> str:
            if not body.get("stream"):
                return "SUMMARY: the user is configuring SSO for Acme with Okta."
            return "Noted. " + "details " * 20

        fake_openai.responder = responder
        for turn in range(8):
            channel = RequestCountingChannel(fake_openai)
            await hub.engine.handle(question(f"Step {turn}: " + "configuring Okta SSO " * 8),
                                    channel)
            # Between the first sign of progress and the finished answer, the only model call
            # is the answer itself: summaries are made after the user has the answer.
            assert channel.requests_while_answering == 1
        summaries = [r for r in fake_openai.chat_requests() if not r.get("stream")]
        assert summaries, "the history never exceeded the budget"
        assert "Step 0" in summaries[0]["messages"][1]["content"]

        last = fake_openai.chat_requests()[-1]
        assert last["stream"] is True
        assert last["messages"][1] == {
            "role": "system",
            "content": "Summary of the earlier conversation:\n"
                       "SUMMARY: the user is configuring SSO for Acme with Okta."}
        shown = " ".join(str(m["content"]) for m in last["messages"][2:])
        assert "Step 0" not in shown and "Step 7" in shown

        conversation = await hub.store.find(question("x").key)
        assert conversation is not None
        assert conversation.summary.startswith("SUMMARY:")
        assert conversation.summary_through_id is not None
        # Folding is not repeated on every turn: the stored summary is reused.
        assert len(summaries) < 8 // 2
    finally:
        await hub.close()


@pytest.mark.parametrize("failure", ["server_errors", "unreachable", "rate_limited"])
async def test_model_failure_gives_a_polite_reply_and_keeps_the_message(
        tmp_path: Path, fake_openai: FakeOpenAI, failure: str) -> None:
    settings = make_settings(tmp_path, fake_openai)
    if failure == "server_errors":
        fake_openai.fail_next(3, status=500, headers=FAST_RETRY)
    elif failure == "rate_limited":
        fake_openai.fail_next(3, status=429, headers=FAST_RETRY)
    else:
        settings = make_settings(tmp_path, fake_openai,
                                 openai_base_url="http://127.0.0.1:9/v1")
    hub = await Hub.create(settings)
    try:
        channel = RecordingChannel()
        result = await hub.engine.handle(question("Is the API down?"), channel)

        assert result.outcome is Outcome.MODEL_FAILED
        [reply] = channel.shown
        assert reply.mode is ReplyMode.NOTICE
        assert "saved" in reply.text and "try again" in reply.text
        for leak in ("Traceback", "Error", "500", "127.0.0.1", "sk-"):
            assert leak not in reply.text
        rows = await hub.store.messages(result.conversation_id or 0)
        assert (rows[0].role, rows[0].status, rows[0].text) == ("user", "ok", "Is the API down?")
        assert rows[1].status == "failed" and rows[1].error
    finally:
        await hub.close()


async def test_stream_broken_midway_keeps_partial_answer_with_a_notice(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="First part of a long answer that never ends",
                                    disconnect_after_chunks=3))
    channel = RecordingChannel()

    result = await hub.engine.handle(question("Tell me everything"), channel)

    assert result.outcome is Outcome.MODEL_FAILED
    final = channel.streams[0].final
    assert final is not None
    assert final.text.startswith("".join(channel.streams[0].deltas).strip())
    assert "interrupted" in final.text
    # The partial answer is not remembered as if it were a whole one.
    await hub.engine.handle(question("Again please"), RecordingChannel())
    roles = [m["role"] for m in fake_openai.chat_requests()[-1]["messages"]]
    assert roles.count("assistant") == 0 and roles.count("user") == 2


async def test_a_redelivered_message_is_answered_once(hub: Hub, fake_openai: FakeOpenAI) -> None:
    first, again = RecordingChannel(), RecordingChannel()
    one = await hub.engine.handle(question("Hello", message_id="evt-1"), first)
    two = await hub.engine.handle(question("Hello", message_id="evt-1"), again)

    assert (one.outcome, two.outcome) == (Outcome.ANSWERED, Outcome.DUPLICATE)
    assert len(first.shown) == 1 and again.shown == [] and again.streams == []
    assert len(fake_openai.chat_requests()) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("", "empty"),
    ("   \n\t  ", "empty"),
    ("x" * 100_000, "100,000 characters"),
    ("\x00\x01\x02\x03\xff\xfe" * 50 + "\ufffd" * 100, "binary data"),
])
async def test_unusable_input_gets_a_clear_reply_and_no_model_call(
        hub: Hub, fake_openai: FakeOpenAI, text: str, expected: str) -> None:
    channel = RecordingChannel()
    result = await hub.engine.handle(question(text), channel)

    assert result.outcome is Outcome.REFUSED
    [reply] = channel.shown
    assert expected in reply.text and reply.mode is ReplyMode.NOTICE
    assert fake_openai.chat_requests() == []


async def test_control_characters_are_cleaned_before_storage(
        fake_openai: FakeOpenAI, database_url: str, tmp_path: Path) -> None:
    pg_hub = await Hub.create(make_settings(tmp_path, fake_openai, database_url=database_url))
    try:
        result = await pg_hub.engine.handle(question("Why\x00 does\x07 it fail?"),
                                            RecordingChannel())
        assert result.outcome is Outcome.ANSWERED
        rows = await pg_hub.store.messages(result.conversation_id or 0)
        assert rows[0].text == "Why does it fail?"
    finally:
        await pg_hub.close()


async def test_without_a_key_or_knowledge_the_hub_says_plainly_that_no_model_is_configured(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, None))
    try:
        channel = RecordingChannel()
        engine = Engine(hub.store, hub.behaviour, model=None, knowledge=None)
        result = await engine.handle(question("Hi"), channel)
        assert result.outcome is Outcome.NO_MODEL
        [reply] = channel.shown
        assert "No language model is configured" in reply.text
        assert reply.mode is ReplyMode.NOTICE
        assert fake_openai.requests == []
        rows = await hub.store.messages(result.conversation_id or 0)
        assert [r.role for r in rows] == ["user", "assistant"]
    finally:
        await hub.close()


async def test_persona_template_and_channel_overrides_shape_the_system_prompt(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    config = write_config(tmp_path, """
persona:
  bot_name: Pip
  organization: Acme
  system_prompt: "I am {bot_name} of {organization} on {platform} for {user_name} in {channel}."
channels:
  - channel: "c1"
    persona:
      bot_name: Pip
      system_prompt: "Billing desk: {bot_name} answering {user_name}, at most {answer_words} words."
    answer:
      max_words: 60
      max_output_tokens: 300
""")
    hub = await Hub.create(make_settings(tmp_path, fake_openai, config_file=config))
    try:
        await hub.engine.handle(question("Hi"), RecordingChannel())
        override = fake_openai.chat_requests()[-1]
        assert override["messages"][0]["content"] == (
            "Billing desk: Pip answering Ada, at most 60 words.")
        assert override["max_completion_tokens"] == 300

        other = question("Hi")
        other = type(other)(**{**{f: getattr(other, f) for f in other.__dataclass_fields__},
                               "key": other.key.__class__("test", "w1", "general", "t9"),
                               "channel_name": "#general"})
        await hub.engine.handle(other, RecordingChannel())
        assert fake_openai.chat_requests()[-1]["messages"][0]["content"] == (
            "I am Pip of Acme on test for Ada in #general.")
    finally:
        await hub.close()


class BrokenPlatformChannel(RecordingChannel):
    """A platform that fails while the answer streams (a network error, an expired token)."""

    async def stream(self) -> RecordingStream:
        stream = await super().stream()

        async def fail(text: str) -> None:
            raise ConnectionResetError("platform went away")

        stream.append = fail  # type: ignore[method-assign]
        return stream


async def test_a_platform_failure_mid_answer_is_logged_not_raised(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    channel = BrokenPlatformChannel()
    result = await hub.engine.handle(question("Will this survive?"), channel)

    assert result.outcome is Outcome.MODEL_FAILED
    assert [r.text for r in channel.posts] == [
        "Sorry, something went wrong on my side while answering. Your message is saved; "
        "please try again in a moment."]
    conversation = await hub.store.find(question("x").key)
    assert conversation is not None
    rows = await hub.store.messages(conversation.id)
    assert rows[0].text == "Will this survive?"


async def test_answers_carry_a_ref_that_feedback_can_use(hub: Hub,
                                                         fake_openai: FakeOpenAI) -> None:
    channel = RecordingChannel()
    result = await hub.engine.handle(question("Thanks for the help"), channel)
    final = channel.streams[0].final
    assert final is not None and final.ref
    assert await hub.engine.record_feedback(final.ref, "u1", helpful=False)
    assert not await hub.engine.record_feedback("999999", "u1", helpful=True)
    for forged in ("", "1; DROP TABLE messages", "x" * 40, "-1"):
        assert not await hub.engine.record_feedback(forged, "u1", helpful=True)
    rows = await hub.store.messages(result.conversation_id or 0)
    assert await hub.store.feedback(rows[1].id) == [("u1", -1)]


async def test_closing_the_hub_closes_the_embedding_client(tmp_path: Path,
                                                           fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai))
    client = hub.knowledge.embedder._client  # type: ignore[union-attr]
    await hub.close()
    assert client.is_closed()


async def test_a_conversation_within_its_budget_is_read_once_per_answer(hub: Hub) -> None:
    """Whether to fold is known from the history read for the answer: no second read."""
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()))

    await hub.engine.handle(question("My order number is 4417."), RecordingChannel())
    event.listen(hub.database.sync_engine, "before_cursor_execute", seen)
    try:
        await hub.engine.handle(question("What was my order number?"), RecordingChannel())
    finally:
        event.remove(hub.database.sync_engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.startswith("SELECT") and " FROM messages" in s]
    assert len(reads) == 1, reads
