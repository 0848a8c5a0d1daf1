"""Recording answers with a chosen cost and time, through the real ConversationStore: what the
usage, budget and CLI tests read back."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.model import ConversationKey
from bot.store.conversations import AnswerRecord, ConversationStore
from bot.store.tables import StoredMessage


async def record_answer(database: AsyncEngine, key: ConversationKey, *, cost: str, at: datetime,
                        model: str = "gpt-4o", tokens_in: int = 100,
                        tokens_out: int = 20) -> int:
    """A user's question and the bot's answer in the conversation of `key`, the answer
    stored as of `at`; returns the answer's id."""
    store = ConversationStore(database)
    conversation = await store.open(key)
    stored = await store.add_user_message(conversation.id, external_id=uuid.uuid4().hex,
                                          author_id="U1", author_name="Ada", text="question",
                                          attachments=[])
    # The user's turn id, alone or with its inbox entry's (the store's newer signature).
    turn = stored[0] if isinstance(stored, tuple) else stored
    assert turn is not None
    answer = await store.add_answer(conversation.id, turn, AnswerRecord(
        text="answer", mode="model" if model else "retrieval_only", model=model,
        tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=Decimal(cost)))
    async with database.begin() as connection:
        await connection.execute(update(StoredMessage).where(StoredMessage.id == answer)
                                 .values(created_at=at))
    return answer
