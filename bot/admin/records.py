"""What the admin pages read from SQL: conversations with their figures, transcripts with the
feedback on each answer, recent feedback, and today's totals.

Read-only, and shaped for pages (one query per list, bounded by a page size), on SQLite and
PostgreSQL alike. The stores the engine writes through stay as they are; this is their reader
for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, exists, func, select

from bot.escalation.store import Ticket
from bot.escalation.store import _ticket as as_ticket  # the store's own row -> Ticket
from bot.model import ConversationKey
from bot.store.repository import Repository
from bot.store.tables import Conversation, Escalation, Feedback, StoredMessage

MAX_SEARCH_CHARS = 200


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: int
    key: ConversationKey
    created_at: datetime
    last_activity: datetime | None
    messages: int
    answers: int
    user_name: str
    escalation_state: str | None  # the newest escalation's state; None: never escalated
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class Turn:
    id: int
    role: str  # user | assistant
    author_id: str
    author_name: str
    text: str
    at: datetime
    mode: str
    status: str
    error: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    latency_ms: int | None
    attachments: int
    up: int = 0
    down: int = 0
    # The citations shown with the answer, (title, url), as stored since migration 0009.
    sources: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    id: int
    key: ConversationKey
    created_at: datetime
    summary: str
    turns: list[Turn]
    escalations: list[tuple[int, str, str, datetime]]  # id, state, reason, opened

    @property
    def cost_usd(self) -> Decimal:
        return sum((t.cost_usd for t in self.turns), Decimal(0))

    @property
    def tokens(self) -> int:
        return sum(t.tokens_in + t.tokens_out for t in self.turns)


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    id: int
    value: int
    user_id: str
    at: datetime
    conversation_id: int
    platform: str
    answer_id: int
    answer: str
    question: str


@dataclass(frozen=True, slots=True)
class Today:
    answers: int = 0
    cost_usd: Decimal = Decimal(0)
    helpful: int = 0
    unhelpful: int = 0
    conversations: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


def _sources(stored: object) -> tuple[tuple[str, str], ...]:
    """(title, url) of each stored citation; anything malformed is left out."""
    if not isinstance(stored, list):
        return ()
    return tuple((str(item.get("title") or item.get("url") or "source"),
                  str(item.get("url") or ""))
                 for item in stored if isinstance(item, dict))


def _like(text: str) -> str:
    """`text` as a LIKE pattern matching itself anywhere (its wildcards escaped with \\)."""
    cleaned = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{cleaned}%"


def start_of_day(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns: they are UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class AdminRecords(Repository):
    async def conversations(self, *, search: str = "", platform: str = "",
                            escalated: bool = False, offset: int = 0,
                            limit: int = 25) -> list[ConversationRow]:
        """Newest activity first. `search` matches any message's text (case-insensitively)."""
        figures = (select(StoredMessage.conversation_id.label("cid"),
                          func.count(StoredMessage.id).label("messages"),
                          func.sum(case((StoredMessage.role == "assistant", 1), else_=0))
                          .label("answers"),
                          func.max(StoredMessage.created_at).label("last"),
                          func.coalesce(func.sum(StoredMessage.cost_usd), 0).label("cost"),
                          func.min(case((StoredMessage.role == "user", StoredMessage.id)))
                          .label("first_user"))
                   .group_by(StoredMessage.conversation_id).subquery())
        newest_escalation = (select(Escalation.state).where(
            Escalation.conversation_id == Conversation.id)
            .order_by(Escalation.id.desc()).limit(1).scalar_subquery())
        query = (
            select(Conversation, figures.c.messages, figures.c.answers, figures.c.last,
                   figures.c.cost, figures.c.first_user, newest_escalation)
            .outerjoin(figures, figures.c.cid == Conversation.id))
        if platform:
            query = query.where(Conversation.platform == platform[:32])
        if escalated:
            query = query.where(exists().where(Escalation.conversation_id == Conversation.id))
        # Printable only: PostgreSQL refuses a NUL in text, and no message contains one.
        search = "".join(ch for ch in search if ch.isprintable()).strip()[:MAX_SEARCH_CHARS]
        if search:
            query = query.where(exists().where(
                StoredMessage.conversation_id == Conversation.id,
                StoredMessage.text.ilike(_like(search), escape="\\")))
        last = func.coalesce(figures.c.last, Conversation.created_at)
        query = query.order_by(last.desc(), Conversation.id.desc()).offset(offset).limit(limit)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
            first_ids = [row[5] for row in rows if row[5] is not None]
            names: dict[int, str] = {}
            if first_ids:
                found = await session.execute(
                    select(StoredMessage.id, StoredMessage.author_name, StoredMessage.author_id)
                    .where(StoredMessage.id.in_(first_ids)))
                names = {r.id: r.author_name or r.author_id for r in found}
        return [ConversationRow(
            id=c.id, key=ConversationKey(c.platform, c.workspace, c.channel, c.thread),
            created_at=_aware(c.created_at) or c.created_at, last_activity=_aware(last_at),
            messages=int(count or 0), answers=int(answers or 0),
            user_name=names.get(first or -1, ""), escalation_state=state,
            cost_usd=Decimal(cost or 0))
            for c, count, answers, last_at, cost, first, state in rows]

    async def escalations(self, *, states: tuple[str, ...], newest_first: bool = False,
                          limit: int = 100) -> list[Ticket]:
        """Like `EscalationStore.tickets`, but resolved ones are wanted newest first."""
        order = Escalation.id.desc() if newest_first else Escalation.id
        async with self._session() as session:
            rows = await session.scalars(select(Escalation).where(Escalation.state.in_(states))
                                         .order_by(order).limit(limit))
            return [as_ticket(row) for row in rows]

    async def transcript(self, conversation_id: int) -> Transcript | None:
        async with self._session() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return None
            messages = list(await session.scalars(
                select(StoredMessage).where(StoredMessage.conversation_id == conversation_id)
                .order_by(StoredMessage.id)))
            votes = await session.execute(
                select(Feedback.message_id,
                       func.sum(case((Feedback.value > 0, 1), else_=0)),
                       func.sum(case((Feedback.value < 0, 1), else_=0)))
                .join(StoredMessage, StoredMessage.id == Feedback.message_id)
                .where(StoredMessage.conversation_id == conversation_id)
                .group_by(Feedback.message_id))
            tally = {int(mid): (int(up or 0), int(down or 0)) for mid, up, down in votes}
            escalations = await session.execute(
                select(Escalation.id, Escalation.state, Escalation.reason, Escalation.created_at)
                .where(Escalation.conversation_id == conversation_id)
                .order_by(Escalation.id))
            return Transcript(
                id=conversation.id,
                key=ConversationKey(conversation.platform, conversation.workspace,
                                    conversation.channel, conversation.thread),
                created_at=_aware(conversation.created_at) or conversation.created_at,
                summary=conversation.summary or "",
                turns=[Turn(id=m.id, role=m.role, author_id=m.author_id,
                            author_name=m.author_name, text=m.text,
                            at=_aware(m.created_at) or m.created_at, mode=m.mode,
                            status=m.status, error=m.error, model=m.model,
                            tokens_in=m.tokens_in, tokens_out=m.tokens_out,
                            cost_usd=Decimal(m.cost_usd or 0), latency_ms=m.latency_ms,
                            attachments=len(m.attachments or []),
                            up=tally.get(m.id, (0, 0))[0], down=tally.get(m.id, (0, 0))[1],
                            sources=_sources(m.sources))
                       for m in messages],
                escalations=[(int(i), str(s), str(r), _aware(at) or at)
                             for i, s, r, at in escalations])

    async def feedback(self, *, value: int | None = None, offset: int = 0,
                       limit: int = 25) -> list[FeedbackRow]:
        """Newest votes first; `value` +1 or -1 keeps only those."""
        answer = StoredMessage.__table__.alias("answer")
        asked = StoredMessage.__table__.alias("asked")
        query = (select(Feedback.id, Feedback.value, Feedback.user_id, Feedback.created_at,
                        answer.c.conversation_id, Conversation.platform, answer.c.id,
                        answer.c.text, asked.c.text)
                 .join(answer, answer.c.id == Feedback.message_id)
                 .join(Conversation, Conversation.id == answer.c.conversation_id)
                 .outerjoin(asked, asked.c.id == answer.c.reply_to_id))
        if value is not None:
            query = query.where(Feedback.value > 0 if value > 0 else Feedback.value < 0)
        query = query.order_by(Feedback.created_at.desc(), Feedback.id.desc()) \
            .offset(offset).limit(limit)
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return [FeedbackRow(id=r[0], value=r[1], user_id=r[2], at=_aware(r[3]) or r[3],
                            conversation_id=r[4], platform=r[5], answer_id=r[6],
                            answer=r[7] or "", question=r[8] or "") for r in rows]

    async def feedback_counts(self, since: datetime | None = None) -> tuple[int, int]:
        """(helpful, unhelpful) votes, all time or since `since`."""
        query = select(func.sum(case((Feedback.value > 0, 1), else_=0)),
                       func.sum(case((Feedback.value < 0, 1), else_=0)))
        if since is not None:
            query = query.where(Feedback.created_at >= since)
        async with self._session() as session:
            up, down = (await session.execute(query)).one()
        return int(up or 0), int(down or 0)

    async def today(self, now: datetime | None = None) -> Today:
        since = start_of_day(now)
        async with self._session() as session:
            answers, cost = (await session.execute(
                select(func.count(StoredMessage.id),
                       func.coalesce(func.sum(StoredMessage.cost_usd), 0))
                .where(and_(StoredMessage.role == "assistant",
                            StoredMessage.created_at >= since)))).one()
            conversations = await session.scalar(
                select(func.count(func.distinct(StoredMessage.conversation_id)))
                .where(StoredMessage.created_at >= since))
            states = await session.execute(select(Escalation.state, func.count())
                                           .group_by(Escalation.state))
            by_state = {str(state): int(count) for state, count in states}
        up, down = await self.feedback_counts(since)
        return Today(answers=int(answers or 0), cost_usd=Decimal(cost or 0), helpful=up,
                     unhelpful=down, conversations=int(conversations or 0), by_state=by_state)


def page_window(page: int, size: int) -> tuple[int, int]:
    """(offset, limit + 1) for page `page` (1-based): one row more tells whether a next
    page exists."""
    return (max(1, page) - 1) * size, size + 1


def since_days(days: int, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)
