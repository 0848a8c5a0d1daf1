"""The composition root: builds the engine and its parts from settings. Adapters are wired to
the engine here and in `bot.server`, never inside the core."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from functools import cached_property

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.answer_cache import AnswerCache
from bot.budgets import BudgetGuard
from bot.config import Behaviour, Settings, load_behaviour
from bot.engine import Engine
from bot.escalation.desk import EscalationDesk, Saver
from bot.escalation.store import EscalationStore
from bot.kb.catalog import SyncInProgress
from bot.kb.knowledge import KnowledgeBase
from bot.kb.schedule import KbScheduler
from bot.llm import ChatModel
from bot.log_redaction import configured_secrets, register_secrets
from bot.moderation import Moderator
from bot.ratelimit import Rate, RateLimiter
from bot.redelivery import Redelivery
from bot.store import migrate
from bot.store.conversations import ConversationStore
from bot.store.database import create_engine
from bot.store.inbox import Inbox
from bot.tokens import count_tokens

log = structlog.get_logger(__name__)

ESCALATION_SWEEP_SECONDS = 30.0  # SLA re-announcements and retried posts are this late at most


@dataclass
class Hub:
    settings: Settings
    behaviour: Behaviour
    database: AsyncEngine
    store: ConversationStore
    model: ChatModel | None
    knowledge: KnowledgeBase
    engine: Engine
    _scheduler: KbScheduler | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Set once start_services has the knowledge base indexed (or found it so) and read.
    knowledge_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def create(cls, settings: Settings, *, apply_migrations: bool = True) -> Hub:
        """Raises `ConfigError` for bad configuration; the database is migrated to head."""
        behaviour = load_behaviour(settings.config_file)
        register_secrets(configured_secrets(settings, behaviour))  # never in a log line
        database = create_engine(settings.resolved_database_url)
        try:
            if apply_migrations:
                before, after = await migrate.upgrade(database)
                if before != after:
                    log.info("database.migrated", before=before, after=after)
            knowledge = KnowledgeBase.from_settings(settings, behaviour, database)
        except BaseException:
            await database.dispose()
            raise
        store = ConversationStore(database)
        inbox = Inbox(database, lease_seconds=settings.inbox_lease_seconds)
        model = ChatModel.from_settings(settings, behaviour)
        if model is None:
            log.warning("model.not_configured", hint="set OPENAI_API_KEY to answer with a model")
        else:
            count_tokens("warm up")  # loads the tokenizer (~0.2 s) now, not on a first question
        return cls(settings=settings, behaviour=behaviour, database=database, store=store,
                   model=model, knowledge=knowledge,
                   engine=Engine(store, behaviour, model, knowledge,
                                 desk=_desk(settings, behaviour, database, store, knowledge),
                                 limiter=_limiter(settings, behaviour), inbox=inbox,
                                 budgets=BudgetGuard.from_database(behaviour.budgets, database),
                                 cache=AnswerCache.create(behaviour.cache, database,
                                                          settings.redis_url),
                                 kb_version=knowledge.catalog.version,
                                 moderator=Moderator.from_settings(settings, behaviour)))

    async def start_services(self) -> None:
        """What `bothub serve` runs beside the HTTP server: the nightly sync, and a sync at
        once when the knowledge base was never indexed or the embedding model changed (so a
        fresh install answers from its documents right away)."""
        self._scheduler = KbScheduler(self.knowledge, cron=self.settings.kb_sync_cron,
                                      database_url=self.settings.resolved_database_url)
        self._scheduler.start()
        if self.engine.desk is not None:
            self._scheduler.every(ESCALATION_SWEEP_SECONDS, self.engine.desk.sweep,
                                  job_id="escalation-sweep")
        self._scheduler.every(self.redelivery.interval, self.redelivery.tick, job_id="inbox")
        task = asyncio.create_task(self._prepare_knowledge())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare_knowledge(self) -> None:
        """Index at once if needed, then read the index before the first question does."""
        try:
            if await self.knowledge.needs_sync():
                await self.knowledge.sync(trigger="first")
        except SyncInProgress:
            pass  # another worker is doing it
        except Exception:
            log.exception("kb.first_sync_failed")
        await self.knowledge.warm()
        self.knowledge_ready.set()

    @cached_property
    def redelivery(self) -> Redelivery:
        assert self.engine.inbox is not None
        return Redelivery(self.engine, self.engine.inbox)

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
        await self.redelivery.drain()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.model is not None:
            await self.model.close()
        if self.engine.limiter is not None:
            await self.engine.limiter.close()
        await self.engine.close()
        await self.knowledge.close()
        await self.database.dispose()


def _desk(settings: Settings, behaviour: Behaviour, database: AsyncEngine,
          conversations: ConversationStore, knowledge: KnowledgeBase) -> EscalationDesk:
    escalations = EscalationStore(database)
    desk = EscalationDesk(escalations, conversations, behaviour.escalation, channels={
        "slack": settings.slack_escalation_channel,
        "discord": settings.discord_escalation_channel,
        "teams": settings.teams_escalation_conversation})
    desk.saver = Saver(knowledge, conversations, escalations)
    return desk


def _limiter(settings: Settings, behaviour: Behaviour) -> RateLimiter:
    rate = behaviour.limits.rate
    return RateLimiter(user=Rate(rate.user.per_minute, rate.user.burst),
                       channel=Rate(rate.channel.per_minute, rate.channel.burst),
                       workspace=Rate(rate.workspace.per_minute, rate.workspace.burst),
                       max_concurrent_model_calls=rate.max_concurrent_model_calls,
                       redis_url=settings.redis_url)
