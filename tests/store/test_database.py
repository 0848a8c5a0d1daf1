"""The SQLite engine: a connection given back to the pool never carries a transaction on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from bot.store import migrate
from bot.store.database import create_engine


async def test_a_connection_returned_mid_transaction_is_rolled_back(tmp_path: Path) -> None:
    """The pool's reset is skipped after a COMMIT (nothing is open then), never when a caller
    gave a connection back with its writes uncommitted: those are undone, and the connection
    holds no write lock for the next user."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bothub.db'}")
    await migrate.upgrade(engine)

    def abandon(connection: Connection) -> Any:
        raw = connection.engine.raw_connection()
        driver = raw.driver_connection
        cursor = raw.cursor()
        cursor.execute("INSERT INTO conversations (platform, workspace, channel, thread, "
                       "summary, created_at, updated_at) VALUES ('slack', 'T', 'C', 't', '', "
                       "'2026-01-01', '2026-01-01')")
        cursor.close()
        assert driver is not None and driver.in_transaction
        raw.close()  # back to the pool, uncommitted
        return driver.in_transaction

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(abandon) is False
        async with engine.begin() as connection:  # a writer is not locked out
            await connection.execute(text("UPDATE conversations SET summary = 'x'"))
            count = (await connection.execute(text("SELECT count(*) FROM conversations")))
            assert count.scalar() == 0
    finally:
        await engine.dispose()
