"""Alembic environment: runs on the connection bothub hands it, or on DATABASE_URL.

`bot.store.migrate` passes an open connection in `config.attributes["connection"]` so that
migrations run inside the application's own event loop; the `alembic` command line opens its own.
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from bot.config import load_settings
from bot.store.database import create_engine
from bot.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    url = config.get_main_option("sqlalchemy.url") or load_settings().resolved_database_url
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    asyncio.run(_run_standalone())
