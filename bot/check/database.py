"""The database: reachable with DATABASE_URL, and its schema against this version's migrations.

The check reads, never writes: it does not create a missing SQLite file and does not apply
migrations (that is `bothub migrate`'s job, and `bothub serve` does it on start).
"""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import text
from sqlalchemy.engine import URL

from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok, warning
from bot.store import migrate
from bot.store.database import async_url, create_engine, is_sqlite

PART = "database"
UNREACHABLE_FIX = ("start the database or correct DATABASE_URL (host, port, database name, "
                   "user and password)")


def checks(context: Context) -> list[Check]:
    return [Check(PART, check_database, UNREACHABLE_FIX)]


async def check_database(context: Context) -> list[Finding]:
    raw = context.settings.resolved_database_url
    url = async_url(raw)  # a ConfigError naming DATABASE_URL for what cannot be served
    where = describe(url)
    if _no_sqlite_file(url):
        return [warning(PART, f"no database yet at {where}",
                        "run `bothub migrate` (bothub serve also creates it on start)")]
    engine = create_engine(raw)
    try:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                version = connection.dialect.server_version_info
            current = await migrate.current_revision(engine)
        except Exception as exc:  # the driver's own words, first line only: no SQL, no password
            return [failed(PART, f"cannot connect to {where}: {type(exc).__name__}: "
                                 f"{first_line(exc)}", UNREACHABLE_FIX)]
    finally:
        await engine.dispose()
    server = f"{_backend_name(url)} {'.'.join(str(p) for p in version or ())}".strip()
    return [_schema_finding(f"{server} at {where}", current)]


def _no_sqlite_file(url: URL) -> bool:
    """A SQLite database that does not exist yet: connecting would create an empty file."""
    return is_sqlite(url) and url.database not in (None, "", ":memory:") \
        and not Path(str(url.database)).exists()


def describe(url: URL) -> str:
    """Where the database is, as it may be shown: host, port and name, never a password."""
    if is_sqlite(url):
        return str(Path(url.database).resolve()) if url.database else "an in-memory SQLite"
    host = url.host or "localhost"
    return f"{host}:{url.port}/{url.database}" if url.port else f"{host}/{url.database}"


def _backend_name(url: URL) -> str:
    return "SQLite" if is_sqlite(url) else "PostgreSQL"


def _schema_finding(server: str, current: str | None) -> Finding:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    head = script.get_current_head()
    if current == head:
        return ok(PART, f"{server}; schema up to date (revision {head})")
    if current is None:
        return warning(PART, f"{server}; empty: no schema yet",
                       "run `bothub migrate` (bothub serve also migrates on start)")
    try:
        pending = sum(1 for _ in script.iterate_revisions(head, current))
    except RevisionError:  # a revision this version has never heard of
        return failed(PART, f"{server}; schema at revision {current}, which this version of "
                            f"bothub does not know (its newest is {head})",
                      "run the bothub version that migrated this database, or point "
                      "DATABASE_URL at this version's database")
    return warning(PART, f"{server}; {pending} migration(s) pending (at {current}, "
                         f"newest {head})", "run `bothub migrate`")
