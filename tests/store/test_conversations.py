"""The storage layer on SQLite and on PostgreSQL: schema, de-duplication, races, history."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.model import ConversationKey
from bot.store import migrate
from bot.store.conversations import AnswerRecord, ConversationStore
from bot.store.tables import Base

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")


@pytest.fixture
def store(database: AsyncEngine) -> ConversationStore:
    return ConversationStore(database)


async def test_migrations_reach_head_match_the_models_and_are_idempotent(
        database: AsyncEngine) -> None:
    assert await migrate.current_revision(database) == migrate.head_revision()
    assert await migrate.upgrade(database) == (migrate.head_revision(), migrate.head_revision())

    def diff(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with database.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_one_conversation_per_key_even_when_opened_concurrently(
        store: ConversationStore) -> None:
    states = await asyncio.gather(*(store.open(KEY) for _ in range(8)))
    assert len({s.id for s in states}) == 1
    other = await store.open(ConversationKey("slack", "T1", "C1", "other-thread"))
    assert other.id != states[0].id
    assert await store.find(KEY) == states[0]
    assert await store.find(ConversationKey("discord", "T1", "C1", KEY.thread)) is None


async def test_a_message_is_stored_once_per_external_id(store: ConversationStore) -> None:
    conversation = await store.open(KEY)
    fields = {"author_id": "U1", "author_name": "Ada", "text": "hello", "attachments": []}
    first = await store.add_user_message(conversation.id, external_id="ev1", **fields)
    again = await store.add_user_message(conversation.id, external_id="ev1", **fields)
    racing = await asyncio.gather(*(store.add_user_message(conversation.id, external_id="ev2",
                                                           **fields) for _ in range(5)))
    assert first is not None and again is None
    assert sum(r is not None for r in racing) == 1
    assert len(await store.messages(conversation.id)) == 2


async def test_turns_keep_order_skip_failed_answers_and_respect_the_summary(
        store: ConversationStore) -> None:
    conversation = await store.open(KEY)
    ids = []
    for n in range(3):
        user = await store.add_user_message(conversation.id, external_id=f"m{n}", author_id="U1",
                                            author_name="Ada", text=f"question {n}",
                                            attachments=[{"name": "a.png"}])
        assert user is not None
        ids.append(user[0])
        status = "failed" if n == 1 else "ok"
        await store.add_answer(conversation.id, user[0], AnswerRecord(
            text=f"answer {n}", mode="model", status=status, model="gpt-4o", tokens_in=10,
            tokens_out=5))
    turns = await store.turns(conversation.id, after_id=None)
    assert [t.text for t in turns] == ["question 0", "answer 0", "question 1", "question 2",
                                       "answer 2"]
    assert [t.text for t in await store.turns(conversation.id, after_id=None,
                                              before_id=ids[2])] == [
        "question 0", "answer 0", "question 1"]

    assert await store.save_summary(conversation.id, "They asked twice.", through_id=ids[1],
                                    expected_through_id=None)
    # A second worker that folded from the same starting point loses instead of overwriting.
    assert not await store.save_summary(conversation.id, "Stale.", through_id=ids[0],
                                        expected_through_id=None)
    reopened = await store.open(KEY)
    assert (reopened.summary, reopened.summary_through_id) == ("They asked twice.", ids[1])
    assert [t.text for t in await store.turns(conversation.id, after_id=ids[1])] == [
        "question 2", "answer 2"]
    rows = await store.messages(conversation.id)
    assert rows[0].attachments == [{"name": "a.png"}]
    assert rows[1].reply_to_id == ids[0] and rows[1].tokens_out == 5


async def test_unicode_and_large_text_round_trip(store: ConversationStore) -> None:
    conversation = await store.open(KEY)
    text = "日本語のテキスト 🚀 — ünïcödé " * 3000
    await store.add_user_message(conversation.id, external_id="big", author_id="U1",
                                 author_name="Zoë", text=text, attachments=[])
    [row] = await store.messages(conversation.id)
    assert row.text == text and row.author_name == "Zoë"


async def test_feedback_is_one_vote_per_user_and_answer(store: ConversationStore) -> None:
    conversation = await store.open(KEY)
    stored = await store.add_user_message(conversation.id, external_id="q", author_id="U1",
                                          author_name="Ada", text="hi", attachments=[])
    assert stored is not None
    user_turn = stored[0]
    assert await store.record_feedback(user_turn, "U1", -1) is None  # no answer yet
    answer = await store.add_answer(conversation.id, user_turn, AnswerRecord(text="a",
                                                                             mode="model"))
    assert await store.record_feedback(user_turn, "U1", -1) == answer
    assert await store.record_feedback(user_turn, "U1", 1) == answer  # changed their mind
    assert await store.record_feedback(user_turn, "U2", -1) == answer
    assert await store.feedback(answer) == [("U1", 1), ("U2", -1)]
