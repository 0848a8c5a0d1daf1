"""Conversations and their turns: the bot's memory of each thread.

Writes that can race (two workers, a platform retry) use INSERT … ON CONFLICT so that the
database, not a check-then-write in Python, decides which one wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.model import ConversationKey
from bot.store.inbox import WORKING
from bot.store.repository import Repository
from bot.store.tables import Conversation, Feedback, InboxEntry, StoredMessage, utcnow


@dataclass(frozen=True, slots=True)
class ConversationState:
    id: int
    summary: str
    summary_through_id: int | None


@dataclass(frozen=True, slots=True)
class Turn:
    id: int
    role: str
    text: str


@dataclass(frozen=True, slots=True)
class InboxRow:
    """The inbox entry written with a user's turn (see `bot.store.inbox`)."""

    platform: str
    envelope: Mapping[str, Any]
    route: Mapping[str, Any]
    worker: str
    lease: timedelta


@dataclass(slots=True)
class AnswerRecord:
    """What the engine learnt while answering; stored as the assistant's turn."""

    text: str
    mode: str
    status: str = "ok"
    error: str = ""
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: int | None = None
    first_token_ms: int | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)  # the citations shown


class ConversationStore(Repository):
    async def open(self, key: ConversationKey) -> ConversationState:
        """The conversation for this key, created on first use."""
        async with self._session() as session:
            await session.execute(
                self._insert(Conversation)
                .values(platform=key.platform, workspace=key.workspace, channel=key.channel,
                        thread=key.thread, summary="")
                .on_conflict_do_nothing(index_elements=["platform", "workspace", "channel",
                                                        "thread"]))
            state = await _state(session, key)
        assert state is not None
        return state

    async def state(self, conversation_id: int) -> ConversationState | None:
        async with self._session() as session:
            row = (await session.execute(
                select(Conversation.id, Conversation.summary, Conversation.summary_through_id)
                .where(Conversation.id == conversation_id))).one_or_none()
        if row is None:
            return None
        return ConversationState(id=row.id, summary=row.summary,
                                 summary_through_id=row.summary_through_id)

    async def find(self, key: ConversationKey) -> ConversationState | None:
        async with self._session() as session:
            return await _state(session, key)

    async def add_user_message(self, conversation_id: int, *, external_id: str, author_id: str,
                               author_name: str, text: str,
                               attachments: Sequence[dict[str, Any]],
                               inbox: InboxRow | None = None) -> tuple[int, int | None] | None:
        """Store the user's turn and, in the same transaction, its inbox entry: (turn id,
        entry id), or None when this message was already stored (a redelivery)."""
        async with self._session() as session:
            result = await session.execute(
                self._insert(StoredMessage)
                .values(conversation_id=conversation_id, role="user",
                        external_id=external_id or None, author_id=author_id,
                        author_name=author_name, text=text, attachments=list(attachments),
                        mode="", status="ok", error="", model="", tokens_in=0, tokens_out=0,
                        cost_usd=Decimal(0))
                .on_conflict_do_nothing(index_elements=["conversation_id", "external_id"])
                .returning(StoredMessage.id))
            turn = result.scalar_one_or_none()
            if turn is None or inbox is None:
                return None if turn is None else (turn, None)
            entry = InboxEntry(message_id=turn, conversation_id=conversation_id,
                               platform=inbox.platform, state=WORKING,
                               envelope=dict(inbox.envelope), route=dict(inbox.route), posted={},
                               worker=inbox.worker, lease_until=utcnow() + inbox.lease,
                               attempts=1)
            session.add(entry)
            await session.flush()
            return turn, entry.id

    async def update_user_text(self, message_id: int, text: str,
                               attachments: Sequence[dict[str, Any]]) -> None:
        """Record what the bot understood (a voice message's transcript) on the stored turn."""
        async with self._session() as session:
            await session.execute(update(StoredMessage).where(StoredMessage.id == message_id)
                                  .values(text=text, attachments=list(attachments)))

    async def add_answer(self, conversation_id: int, reply_to_id: int,
                         record: AnswerRecord) -> int:
        async with self._session() as session:
            row = StoredMessage(
                conversation_id=conversation_id, role="assistant", reply_to_id=reply_to_id,
                author_id="bot", author_name="", text=record.text, attachments=[],
                mode=record.mode, status=record.status, error=record.error, model=record.model,
                tokens_in=record.tokens_in, tokens_out=record.tokens_out,
                cost_usd=record.cost_usd, latency_ms=record.latency_ms,
                first_token_ms=record.first_token_ms, sources=record.sources)
            session.add(row)
            await session.flush()
            return row.id

    async def turns(self, conversation_id: int, *, after_id: int | None,
                    before_id: int | None = None) -> list[Turn]:
        """Turns worth remembering, oldest first: every user turn and the answers that worked."""
        query = (select(StoredMessage.id, StoredMessage.role, StoredMessage.text)
                 .where(StoredMessage.conversation_id == conversation_id)
                 .where((StoredMessage.role == "user") | (StoredMessage.status == "ok"))
                 .order_by(StoredMessage.id))
        if after_id is not None:
            query = query.where(StoredMessage.id > after_id)
        if before_id is not None:
            query = query.where(StoredMessage.id < before_id)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return [Turn(id=row.id, role=row.role, text=row.text) for row in rows]

    async def save_summary(self, conversation_id: int, summary: str, through_id: int, *,
                           expected_through_id: int | None) -> bool:
        """Store a new summary unless another worker folded the same turns first."""
        async with self._session() as session:
            result = await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id,
                       Conversation.summary_through_id.is_not_distinct_from(expected_through_id))
                .values(summary=summary, summary_through_id=through_id))
            return bool(getattr(result, "rowcount", 0))

    async def messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every stored row of a conversation, for transcripts and tests."""
        async with self._session() as session:
            result = await session.execute(
                select(StoredMessage).where(StoredMessage.conversation_id == conversation_id)
                .order_by(StoredMessage.id))
            return list(result.scalars())

    async def record_feedback(self, user_turn: int, user_id: str, value: int) -> int | None:
        """Store a vote on the answer to `user_turn`; None when there is no such answer."""
        async with self._session() as session:
            answer = (await session.execute(
                select(StoredMessage.id).where(StoredMessage.reply_to_id == user_turn,
                                               StoredMessage.role == "assistant")
                .order_by(StoredMessage.id.desc()).limit(1))).scalar_one_or_none()
            if answer is None:
                return None
            statement = self._insert(Feedback).values(message_id=answer, user_id=user_id,
                                                      value=value, created_at=utcnow())
            await session.execute(statement.on_conflict_do_update(
                index_elements=["message_id", "user_id"],
                set_={"value": statement.excluded.value,
                      "created_at": statement.excluded.created_at}))
            return answer

    async def conversation_of(self, message_id: int) -> tuple[int, ConversationKey] | None:
        async with self._session() as session:
            row = (await session.execute(
                select(Conversation.id, Conversation.platform, Conversation.workspace,
                       Conversation.channel, Conversation.thread)
                .join(StoredMessage, StoredMessage.conversation_id == Conversation.id)
                .where(StoredMessage.id == message_id))).first()
        if row is None:
            return None
        return int(row[0]), ConversationKey(row[1], row[2], row[3], row[4])

    async def unhelpful_votes(self, conversation_id: int) -> int:
        """👎 votes on this conversation's answers (each user's last vote per answer)."""
        async with self._session() as session:
            count = await session.scalar(
                select(func.count()).select_from(Feedback)
                .join(StoredMessage, StoredMessage.id == Feedback.message_id)
                .where(StoredMessage.conversation_id == conversation_id, Feedback.value < 0))
        return int(count or 0)

    async def feedback(self, message_id: int) -> list[tuple[str, int]]:
        async with self._session() as session:
            rows = await session.execute(select(Feedback.user_id, Feedback.value)
                                         .where(Feedback.message_id == message_id)
                                         .order_by(Feedback.id))
            return [(row.user_id, row.value) for row in rows]

    async def ping(self) -> None:
        async with self._session() as session:
            await session.execute(select(1))


async def _state(session: AsyncSession, key: ConversationKey) -> ConversationState | None:
    row = (await session.execute(
        select(Conversation.id, Conversation.summary, Conversation.summary_through_id)
        .where(Conversation.platform == key.platform, Conversation.workspace == key.workspace,
               Conversation.channel == key.channel, Conversation.thread == key.thread)
    )).one_or_none()
    if row is None:
        return None
    return ConversationState(id=row.id, summary=row.summary,
                             summary_through_id=row.summary_through_id)
