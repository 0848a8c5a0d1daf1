"""The database check: connects, reads the schema's revision, never writes."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from bot.check import State
from bot.store import migrate
from bot.store.database import create_engine
from tests.check.conftest import SilentServer, check_settings, findings_for, the


async def _migrate_to(url: str, revision: str) -> None:
    engine = create_engine(url)
    config = migrate.alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


async def test_a_migrated_database_is_ok(tmp_path: Path, database_url: str) -> None:
    await _migrate_to(database_url, "head")
    found = the(await findings_for(check_settings(tmp_path, database_url=database_url)),
                "database")
    assert found.state is State.OK
    assert f"schema up to date (revision {migrate.head_revision()})" in found.detail
    assert ("PostgreSQL" if database_url.startswith("postgresql") else "SQLite") in found.detail


async def test_pending_migrations_are_a_warning_and_are_not_applied(
        tmp_path: Path, database_url: str) -> None:
    await _migrate_to(database_url, "0006")
    found = the(await findings_for(check_settings(tmp_path, database_url=database_url)),
                "database")
    assert found.state is State.WARNING
    assert "migration(s) pending (at 0006" in found.detail
    assert found.fix == "run `bothub migrate`"
    assert await _revision(database_url) == "0006"


async def test_an_empty_database_asks_for_bothub_migrate(tmp_path: Path,
                                                         postgres_url: str) -> None:
    found = the(await findings_for(check_settings(tmp_path, database_url=postgres_url)),
                "database")
    assert found.state is State.WARNING
    assert "empty: no schema yet" in found.detail and "bothub migrate" in found.fix
    assert await _revision(postgres_url) is None


async def test_a_revision_from_a_newer_bothub_fails(tmp_path: Path, database_url: str) -> None:
    await _migrate_to(database_url, "head")
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    await engine.dispose()
    found = the(await findings_for(check_settings(tmp_path, database_url=database_url)),
                "database")
    assert found.state is State.FAILED
    assert "revision 9999, which this version of bothub does not know" in found.detail


async def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "bothub.db"
    found = the(await findings_for(check_settings(tmp_path, database_url=f"sqlite:///{path}")),
                "database")
    assert found.state is State.WARNING
    assert f"no database yet at {path}" in found.detail
    assert not path.parent.exists()


async def test_an_unreachable_server_fails_without_showing_the_password(
        tmp_path: Path, closed_port: int) -> None:
    url = f"postgresql://bothub:Sup3rSecretPw@127.0.0.1:{closed_port}/bothub"
    findings = await findings_for(check_settings(tmp_path, database_url=url))
    found = the(findings, "database")
    assert found.state is State.FAILED
    assert f"cannot connect to 127.0.0.1:{closed_port}/bothub" in found.detail
    assert "DATABASE_URL" in found.fix
    assert all("Sup3rSecretPw" not in f.detail + f.fix for f in findings)


async def test_an_unsupported_url_names_the_variable(tmp_path: Path) -> None:
    found = the(await findings_for(check_settings(
        tmp_path, database_url="mysql://root:pw@localhost/bothub")), "database")
    assert found.state is State.FAILED
    assert found.detail == "DATABASE_URL: 'mysql' is not supported; use sqlite or postgresql"


async def test_a_server_that_never_answers_times_out(tmp_path: Path,
                                                     silent_server: SilentServer) -> None:
    url = f"postgresql://bothub@127.0.0.1:{silent_server.port}/bothub"
    findings = await findings_for(check_settings(tmp_path, database_url=url), seconds=1)
    found = the(findings, "database")
    assert found.state is State.FAILED
    assert found.detail == "no answer within 1 s"
    assert "DATABASE_URL" in found.fix
    assert the(findings, "redis").state is State.SKIPPED  # the others still report
