"""The composition root: builds the engine and its parts from settings. Adapters are wired to
the engine here and in `bot.server`, never inside the core."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Behaviour, Settings, load_behaviour
from bot.engine import Engine
from bot.llm import ChatModel
from bot.store import migrate
from bot.store.conversations import ConversationStore
from bot.store.database import create_engine
from bot.tokens import count_tokens

log = structlog.get_logger(__name__)


@dataclass
class Hub:
    settings: Settings
    behaviour: Behaviour
    database: AsyncEngine
    store: ConversationStore
    model: ChatModel | None
    engine: Engine

    @classmethod
    async def create(cls, settings: Settings, *, apply_migrations: bool = True) -> Hub:
        """Raises `ConfigError` for bad configuration; the database is migrated to head."""
        behaviour = load_behaviour(settings.config_file)
        database = create_engine(settings.resolved_database_url)
        try:
            if apply_migrations:
                before, after = await migrate.upgrade(database)
                if before != after:
                    log.info("database.migrated", before=before, after=after)
        except BaseException:
            await database.dispose()
            raise
        store = ConversationStore(database)
        model = ChatModel.from_settings(settings, behaviour)
        if model is None:
            log.warning("model.not_configured", hint="set OPENAI_API_KEY to answer with a model")
        else:
            count_tokens("warm up")  # loads the tokenizer (~0.2 s) now, not on a first question
        return cls(settings=settings, behaviour=behaviour, database=database, store=store,
                   model=model, engine=Engine(store, behaviour, model))

    async def close(self) -> None:
        if self.model is not None:
            await self.model.close()
        await self.database.dispose()
