"""Apply alembic migrations from inside bothub (serve start, `bothub migrate`, any DB command)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent
MIGRATION_LOCK = 0x626F74687562  # "bothub": the advisory lock held while migrating


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the schema to head; returns (before, after). Safe to call on every start."""
    before = await current_revision(engine)
    head = head_revision()
    if before != head:
        config = alembic_config()

        def run(connection: Connection) -> None:
            if connection.dialect.name == "postgresql":
                # Workers starting together migrate one at a time; the others then find the
                # schema at head (alembic reads the version after the lock) and do nothing.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with engine.begin() as connection:
            await connection.run_sync(run)
    return before, head
