"""What every repository shares: sessions, dialect-aware upserts, and one storage error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from bot.store.database import session_factory


class StorageUnavailable(Exception):
    """The database refused or could not be reached; `reason` is safe to log, never to chat."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Repository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = session_factory(engine)
        # INSERT … ON CONFLICT exists on both dialects, under two names.
        self._insert: Any = (postgresql.insert if engine.dialect.name == "postgresql"
                             else sqlite.insert)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """One transaction; any database failure becomes `StorageUnavailable`."""
        with _storage_errors():
            async with self._sessions.begin() as session:
                yield session

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction on a plain connection, for the statements every message runs: they
        need none of a session's bookkeeping (identity map, unit of work, ORM bulk paths),
        which cost more CPU than the statements themselves. Same errors as `_session`."""
        with _storage_errors():
            async with self._engine.begin() as connection:
                yield connection


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Any database failure in the block becomes `StorageUnavailable`."""
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        raise StorageUnavailable(_describe(exc)) from exc
    except SQLAlchemyError as exc:
        raise StorageUnavailable(type(exc).__name__) from exc


def _describe(exc: DBAPIError) -> str:
    """A one-line cause without SQL or parameters (which can hold user text)."""
    text = str(exc.orig) if exc.orig is not None else type(exc).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:200]
