"""Database connection: one async engine for SQLite (embedded default) or PostgreSQL.

Operators write ordinary URLs (`postgresql://…`, `sqlite:///…`); the async driver is chosen here
so that a `DATABASE_URL` copied from any PostgreSQL tutorial works.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from bot.config import ConfigError

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg",
                  "postgres": "postgresql+psycopg"}


def async_url(url: str) -> URL:
    """The URL with an async driver; raises `ConfigError` for what we cannot serve."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL: not a database URL: {_redact(url)!r}") from None
    backend = parsed.drivername.split("+", 1)[0]
    if backend not in _ASYNC_DRIVERS:
        raise ConfigError(f"DATABASE_URL: {backend!r} is not supported; use sqlite or postgresql")
    return parsed.set(drivername=_ASYNC_DRIVERS[backend])


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable>"


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


SQLITE_BUSY_SECONDS = 30.0


def create_engine(url: str) -> AsyncEngine:
    target = async_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if is_sqlite(target):
        if target.database and target.database != ":memory:":
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        # One file, one writer at a time: under load, writers queue for the lock rather than
        # fail (a busy machine can hold it for seconds).
        options = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
        # A connection given back is rolled back only when a transaction is still open.
        options["pool_reset_on_return"] = None
    engine = create_async_engine(target, **options)
    if is_sqlite(target):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _rollback_if_open)
    return engine


def _rollback_if_open(_dbapi_connection: Any, record: ConnectionPoolEntry,
                      state: PoolResetState) -> None:
    """The pool's rollback on return, only where a transaction is still open. The pool's own
    rolls back every connection whose transaction the caller ended, and most end by COMMIT:
    on aiosqlite each rollback is a round trip to the connection's thread (about one in five
    of those a message costs) that SQLite answers by doing nothing. Whether a transaction is
    open is a flag of the connection, read here without that round trip."""
    if not state.asyncio_safe or state.transaction_was_reset:
        return  # as the pool's own reset: nothing to do, or not from here
    try:
        open_transaction = bool(getattr(record.driver_connection, "in_transaction", True))
    except ValueError:  # aiosqlite's connection is closed: nothing to roll back
        return
    if open_transaction and record.dbapi_connection is not None:
        record.dbapi_connection.rollback()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers and the one writer proceed together; foreign keys are off by default."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        # A read-only database keeps its journal mode; reading still works.
        with contextlib.suppress(Exception):
            cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
