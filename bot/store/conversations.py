"""Conversations and their turns: the bot's memory of each thread.

Writes that can race (two workers, a platform retry) use INSERT … ON CONFLICT so that the
database, not a check-then-write in Python, decides which one wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, Select, Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.model import ConversationKey
from bot.store.inbox import WORKING
from bot.store.repository import Repository
from bot.store.tables import Conversation, Feedback, InboxEntry, StoredMessage, utcnow

# The statements every message runs are Core statements on the tables, built once with their
# values as bound parameters. A statement built per call (values inline, or an ORM entity,
# which routes DML through the ORM's bulk paths) is rebuilt, walked for its cache key and
# looked up again on every call: most of the CPU the store spent per message.
_CONVERSATIONS = cast(Table, Conversation.__table__)
_MESSAGES = cast(Table, StoredMessage.__table__)
_INBOX = cast(Table, InboxEntry.__table__)

_STATE_BY_KEY = (
    select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.summary, _CONVERSATIONS.c.summary_through_id)
    .where(_CONVERSATIONS.c.platform == bindparam("platform"),
           _CONVERSATIONS.c.workspace == bindparam("workspace"),
           _CONVERSATIONS.c.channel == bindparam("channel"),
           _CONVERSATIONS.c.thread == bindparam("thread")))
_STATE_BY_ID = (
    select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.summary, _CONVERSATIONS.c.summary_through_id)
    .where(_CONVERSATIONS.c.id == bindparam("conversation")))
_ADD_ENTRY = insert(_INBOX)
_ADD_ANSWER = insert(_MESSAGES)


def _turns_query(*, after: bool, before: bool) -> Select[Any]:
    """Turns worth remembering: every user turn and the answers that worked, oldest first."""
    m = _MESSAGES.c
    query = (select(m.id, m.role, m.text)
             .where(m.conversation_id == bindparam("conversation"))
             .where((m.role == "user") | (m.status == "ok"))
             .order_by(m.id))
    if after:
        query = query.where(m.id > bindparam("after_id"))
    if before:
        query = query.where(m.id < bindparam("before_id"))
    return query


_TURNS = {(after, before): _turns_query(after=after, before=before)
          for after in (False, True) for before in (False, True)}


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
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # INSERT … ON CONFLICT is dialect-specific: these two are built per store.
        self._create = (self._insert(_CONVERSATIONS)
                        .on_conflict_do_nothing(index_elements=["platform", "workspace",
                                                                "channel", "thread"])
                        .returning(_CONVERSATIONS.c.id, _CONVERSATIONS.c.summary,
                                   _CONVERSATIONS.c.summary_through_id))
        self._add_turn = (self._insert(_MESSAGES)
                          .on_conflict_do_nothing(index_elements=["conversation_id",
                                                                  "external_id"])
                          .returning(_MESSAGES.c.id))

    async def open(self, key: ConversationKey) -> ConversationState:
        """The conversation for this key, created on first use. Read first: a conversation
        that exists (every follow-up in a thread) costs one read and no write lock; a racing
        creator that wins the insert is read back."""
        names = {"platform": key.platform, "workspace": key.workspace,
                 "channel": key.channel, "thread": key.thread}
        async with self._transaction() as connection:
            state = await _state(connection, key)
            if state is not None:
                return state
            row = (await connection.execute(self._create, {**names, "summary": ""})) \
                .one_or_none()
            if row is not None:
                return ConversationState(id=row.id, summary=row.summary,
                                         summary_through_id=row.summary_through_id)
            state = await _state(connection, key)
        assert state is not None
        return state

    async def state(self, conversation_id: int) -> ConversationState | None:
        async with self._transaction() as connection:
            row = (await connection.execute(_STATE_BY_ID, {"conversation": conversation_id})
                   ).one_or_none()
        if row is None:
            return None
        return ConversationState(id=row.id, summary=row.summary,
                                 summary_through_id=row.summary_through_id)

    async def find(self, key: ConversationKey) -> ConversationState | None:
        async with self._transaction() as connection:
            return await _state(connection, key)

    async def add_user_message(self, conversation_id: int, *, external_id: str, author_id: str,
                               author_name: str, text: str,
                               attachments: Sequence[dict[str, Any]],
                               inbox: InboxRow | None = None) -> tuple[int, int | None] | None:
        """Store the user's turn and, in the same transaction, its inbox entry: (turn id,
        entry id), or None when this message was already stored (a redelivery)."""
        async with self._transaction() as connection:
            result = await connection.execute(self._add_turn, {
                "conversation_id": conversation_id, "role": "user",
                "external_id": external_id or None, "author_id": author_id,
                "author_name": author_name, "text": text, "attachments": list(attachments),
                "mode": "", "status": "ok", "error": "", "model": "", "tokens_in": 0,
                "tokens_out": 0, "cost_usd": Decimal(0)})
            turn = result.scalar_one_or_none()
            if turn is None or inbox is None:
                return None if turn is None else (turn, None)
            entry = await connection.execute(_ADD_ENTRY, {
                "message_id": turn, "conversation_id": conversation_id,
                "platform": inbox.platform, "state": WORKING, "envelope": dict(inbox.envelope),
                "route": dict(inbox.route), "posted": {}, "worker": inbox.worker,
                "lease_until": utcnow() + inbox.lease, "attempts": 1})
            return turn, _new_id(entry)

    async def update_user_text(self, message_id: int, text: str,
                               attachments: Sequence[dict[str, Any]]) -> None:
        """Record what the bot understood (a voice message's transcript) on the stored turn."""
        async with self._session() as session:
            await session.execute(update(StoredMessage).where(StoredMessage.id == message_id)
                                  .values(text=text, attachments=list(attachments)))

    async def add_answer(self, conversation_id: int, reply_to_id: int,
                         record: AnswerRecord) -> int:
        async with self._transaction() as connection:
            result = await connection.execute(_ADD_ANSWER, {
                "conversation_id": conversation_id, "role": "assistant",
                "reply_to_id": reply_to_id, "author_id": "bot", "author_name": "",
                "text": record.text, "attachments": [], "mode": record.mode,
                "status": record.status, "error": record.error, "model": record.model,
                "tokens_in": record.tokens_in, "tokens_out": record.tokens_out,
                "cost_usd": record.cost_usd, "latency_ms": record.latency_ms,
                "first_token_ms": record.first_token_ms, "sources": record.sources})
            return _new_id(result)

    async def turns(self, conversation_id: int, *, after_id: int | None,
                    before_id: int | None = None) -> list[Turn]:
        """Turns worth remembering, oldest first: every user turn and the answers that worked."""
        params: dict[str, int] = {"conversation": conversation_id}
        if after_id is not None:
            params["after_id"] = after_id
        if before_id is not None:
            params["before_id"] = before_id
        async with self._transaction() as connection:
            rows = (await connection.execute(
                _TURNS[after_id is not None, before_id is not None], params)).all()
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


def _new_id(result: CursorResult[Any]) -> int:
    """The id the database gave the one row just inserted."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def _state(connection: AsyncConnection,
                 key: ConversationKey) -> ConversationState | None:
    row = (await connection.execute(_STATE_BY_KEY, {
        "platform": key.platform, "workspace": key.workspace, "channel": key.channel,
        "thread": key.thread})).one_or_none()
    if row is None:
        return None
    return ConversationState(id=row.id, summary=row.summary,
                             summary_through_id=row.summary_through_id)
