"""Budgets and the answer cache as a user and an owner see them, through the whole engine."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot import replies
from bot.app import Hub
from bot.engine import Outcome
from bot.model import Author, ConversationKey, Message
from bot.store.conversations import AnswerRecord
from tests.conftest import make_settings, question, write_config
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.recording_channel import RecordingChannel


def _in(channel: str, text: str, thread: str, user: str = "Ada") -> Message:
    return Message(key=ConversationKey("test", "w1", channel, thread), id=f"{channel}-{thread}",
                   author=Author(id=user.lower(), display_name=user), text=text)


async def test_the_same_first_question_in_a_channel_is_answered_from_the_cache(
        hub: Hub, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    first = RecordingChannel()
    assert (await hub.engine.handle(_in("c1", "Where are invoices?", "t1"), first)).outcome \
        is Outcome.ANSWERED
    again = RecordingChannel()
    result = await hub.engine.handle(_in("c1", "where are  INVOICES", "t2", user="Bob"), again)
    assert result.outcome is Outcome.ANSWERED
    assert again.shown[0].text == "Invoices are under Billing."
    assert again.shown[0].ref  # feedback works on a cached answer too
    assert len(fake_openai.chat_requests()) == 1
    rows = await hub.store.messages(result.conversation_id or 0)
    assert rows[-1].mode == "cache" and rows[-1].cost_usd == 0

    # Another channel, or a follow-up in a thread, asks the model.
    await hub.engine.handle(_in("c2", "Where are invoices?", "t3"), RecordingChannel())
    await hub.engine.handle(Message(key=ConversationKey("test", "w1", "c1", "t1"),
                                    id="follow-up", author=Author("ada", "Ada"),
                                    text="Where are invoices?"), RecordingChannel())
    assert len(fake_openai.chat_requests()) == 3


async def test_an_answer_that_names_the_user_is_not_shared(hub: Hub,
                                                          fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Sure Ada, open Billing."),
                      ScriptedReply(text="Open Billing."))
    await hub.engine.handle(_in("c1", "How do I pay?", "t1"), RecordingChannel())
    bob = RecordingChannel()
    await hub.engine.handle(_in("c1", "How do I pay?", "t2", user="Bob"), bob)
    assert bob.shown[0].text == "Open Billing."
    assert len(fake_openai.chat_requests()) == 2


BUDGET = """
budgets:
  default: {{daily_usd: 0.01, action: {action}, cheaper_model: gpt-4o-mini}}
cache: {{enabled: false}}
"""


async def _spend(hub: Hub, usd: str) -> None:
    conversation = await hub.store.open(ConversationKey("test", "w1", "c9", "spent"))
    stored = await hub.store.add_user_message(conversation.id, external_id="spent",
                                              author_id="u", author_name="", text="q",
                                              attachments=[])
    assert stored is not None
    await hub.store.add_answer(conversation.id, stored[0], AnswerRecord(
        text="a", mode="model", model="gpt-4o", cost_usd=Decimal(usd)))


async def test_over_budget_a_cheaper_model_answers_and_the_owner_is_alerted_once(
        tmp_path: Path, fake_openai: FakeOpenAI, capsys: object) -> None:
    config = write_config(tmp_path, BUDGET.format(action="cheaper_model"))
    hub = await Hub.create(make_settings(tmp_path, fake_openai, config_file=config))
    try:
        await hub.engine.handle(question("before", thread="a"), RecordingChannel())
        assert fake_openai.chat_requests()[-1]["model"] == "gpt-4o"
        await _spend(hub, "0.02")
        hub.engine._budgets._spent.clear()  # type: ignore[union-attr]  # skip its 5 s cache
        for n in range(3):
            await hub.engine.handle(question(f"after {n}", thread=f"b{n}"), RecordingChannel())
        assert [r["model"] for r in fake_openai.chat_requests()[1:]] == ["gpt-4o-mini"] * 3
    finally:
        await hub.close()
    logged = capsys.readouterr().out  # type: ignore[attr-defined]
    assert logged.count("budget.alert") == 1


async def test_over_budget_in_retrieval_only_mode_the_documentation_answers(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    config = write_config(tmp_path, BUDGET.format(action="retrieval_only"))
    hub = await Hub.create(make_settings(tmp_path, fake_openai, config_file=config))
    try:
        await hub.knowledge.sync(trigger="manual")
        await _spend(hub, "1.00")
        channel = RecordingChannel()
        result = await hub.engine.handle(
            question("How do I turn on two-factor authentication?"), channel)
        assert result.outcome is Outcome.RETRIEVAL_ONLY
        assert channel.shown[0].text.startswith(replies.KNOWLEDGE_ONLY)
        assert fake_openai.chat_requests() == []
    finally:
        await hub.close()
