"""The SQL schema, as SQLAlchemy models. Migrations in `migrations/versions` create it.

A change here always comes with a new migration; `tests/store/test_migrations.py` fails when the
two disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    Unicode,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL ids may outgrow 32 bits.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Conversation(Base):
    """One thread on one platform. The running summary holds what no longer fits verbatim."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("platform", "workspace", "channel", "thread",
                                       name="uq_conversations_key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(128))
    thread: Mapped[str] = mapped_column(String(128))
    summary: Mapped[str] = mapped_column(Text, default="")
    summary_through_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class StoredMessage(Base):
    """A turn: the user's message as received (redacted) or the bot's answer with its costs."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "external_id", name="uq_messages_external"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    external_id: Mapped[str | None] = mapped_column(String(191), nullable=True)
    reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), nullable=True)
    author_id: Mapped[str] = mapped_column(String(128), default="")
    author_name: Mapped[str] = mapped_column(String(256), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    mode: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | failed
    error: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0))
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_token_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # An answer's citations as shown to the user: [{"index", "title", "url", "snippet"}].
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list,
                                                          server_default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)



class InboxEntry(Base):
    """A question accepted from a platform and not yet answered for certain: written with the
    user's turn, before the platform is acknowledged, and done only once the answer is
    delivered. A worker holds an entry by a lease it keeps renewing; an entry whose lease ran
    out (its worker died) is claimed by another worker and answered there, editing whatever
    the first attempt had already posted (`posted`) instead of posting twice."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_state_lease", "state", "lease_until"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"),
                                            unique=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    # working (a worker holds the lease) | waiting_model (answered from the documentation,
    # a full answer follows when a model is back) | done | failed (gave up after retries)
    state: Mapped[str] = mapped_column(String(16))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the Message, redacted
    route: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # where to reply
    posted: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what is already shown
    worker: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

class Feedback(Base):
    """A thumbs up or down on an answer, one per user and answer (the last click counts)."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("message_id", "user_id", name="uq_feedback_vote"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"),
                                            index=True)
    user_id: Mapped[str] = mapped_column(String(128))
    value: Mapped[int] = mapped_column(Integer)  # +1 or -1
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class KbDocument(Base):
    """What the index holds for one document, so a sync can tell what changed without reading
    the index. `embedding_model` changes force a re-embed instead of mixing vectors."""

    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("source", "doc_id", name="uq_kb_documents_doc"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    doc_id: Mapped[str] = mapped_column(String(700))
    title: Mapped[str] = mapped_column(String(500), default="")
    url: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    embedding_model: Mapped[str] = mapped_column(String(128), default="")
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class KbSyncRun(Base):
    """One sync, manual or scheduled. A scheduled run is claimed by inserting its fire time:
    the unique constraint lets exactly one worker win it."""

    __tablename__ = "kb_sync_runs"
    __table_args__ = (UniqueConstraint("trigger", "scheduled_for", name="uq_kb_sync_runs_claim"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(String(16))  # manual | schedule
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: every source
    status: Mapped[str] = mapped_column(String(16))  # running | ok | partial | failed | interrupted
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    chunks_embedded: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class KbEntry(Base):
    """Knowledge written by bothub itself (answers from resolved escalations), served to the
    index by the `escalations` source."""

    __tablename__ = "kb_entries"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SchedulerJob(Base):
    """APScheduler's job store table, declared here so that migrations own the whole schema."""

    __tablename__ = "apscheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True, nullable=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class Escalation(Base):
    """A conversation handed to people: open (posted to the human channel, waiting) -> claimed
    (an agent owns it; the bot is silent there) -> resolved (the bot answers again). At most
    one escalation per conversation is active (open or claimed) at a time."""

    __tablename__ = "escalations"
    __table_args__ = (
        Index("ix_escalations_one_active", "conversation_id", unique=True,
              sqlite_where=text("state != 'resolved'"),
              postgresql_where=text("state != 'resolved'")),
        Index("ix_escalations_post", "destination_platform", "destination_message"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[str] = mapped_column(String(128), default="")
    user_name: Mapped[str] = mapped_column(String(200), default="")
    # Where the user asked: the conversation key, kept here so relays need no join.
    origin_platform: Mapped[str] = mapped_column(String(32))
    origin_workspace: Mapped[str] = mapped_column(String(128))
    origin_channel: Mapped[str] = mapped_column(String(400))
    origin_thread: Mapped[str] = mapped_column(String(400))
    # Where people see it: a platform, a channel there, and the post once it is made.
    destination_platform: Mapped[str] = mapped_column(String(32), default="")
    destination: Mapped[str] = mapped_column(String(400), default="")
    destination_message: Mapped[str | None] = mapped_column(String(400), nullable=True)
    destination_thread: Mapped[str | None] = mapped_column(String(400), nullable=True)
    post_attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_by_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    save_to_knowledge: Mapped[bool] = mapped_column(Boolean, default=False)
    announced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    announcements: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EscalationEvent(Base):
    """Every transition of an escalation: who, when, from where."""

    __tablename__ = "escalation_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(
        ForeignKey("escalations.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str] = mapped_column(String(128), default="")
    actor_name: Mapped[str] = mapped_column(String(200), default="")
    platform: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TeamsConversation(Base):
    """A Teams conversation bothub may write to unprompted (proactive messages, escalations):
    the conversation reference Bot Framework sent with its latest activity there."""

    __tablename__ = "teams_conversations"

    conversation_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16))  # personal, groupChat or channel
    service_url: Mapped[str] = mapped_column(String(400))
    reference: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


# Slack's multi-workspace installations, in the tables slack_sdk's AsyncSQLAlchemyInstallationStore
# reads and writes, declared on our metadata so that migrations create and evolve them too.
SLACK_INSTALLATIONS = "slack_installations"
SLACK_BOTS = "slack_bots"
AsyncSQLAlchemyInstallationStore.build_installations_table(Base.metadata, SLACK_INSTALLATIONS)
AsyncSQLAlchemyInstallationStore.build_bots_table(Base.metadata, SLACK_BOTS)


# An answer's cost, found by conversation and time: what a workspace spent since the start of
# its budget's day or month (bot.usage.UsageStore.spent) without reading its whole history.
# Partial (answers only): queries name `role = 'assistant'` literally so both databases use it.
Index("ix_messages_answers_by_time", StoredMessage.conversation_id, StoredMessage.created_at,
      sqlite_where=text("role = 'assistant'"), postgresql_where=text("role = 'assistant'"))


class BudgetAlert(Base):
    """A budget warning or breach that was announced: one row per workspace, period and
    threshold (a percentage; 100 is the limit itself). Several workers see a budget trip at
    the same moment; the one whose insert wins announces it, so operators hear it once."""

    __tablename__ = "budget_alerts"
    __table_args__ = (UniqueConstraint("platform", "workspace", "period_kind", "period_start",
                                       "threshold", name="uq_budget_alerts_once"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str] = mapped_column(String(128))
    period_kind: Mapped[str] = mapped_column(String(8))  # day | month
    period_start: Mapped[date] = mapped_column(Date)  # in the budgets' time zone
    threshold: Mapped[int] = mapped_column(Integer)
    spent_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    limit_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnswerCacheEntry(Base):
    """A cached answer, keyed by the digest of its question and everything that shaped it
    (bot.answer_cache). Expired rows are ignored when read and deleted now and then."""

    __tablename__ = "answer_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
