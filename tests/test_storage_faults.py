"""A database that is read-only, locked or gone: a clear reply each time, never a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.app import Hub
from bot.engine import Outcome
from bot.replies import STORAGE_DOWN
from tests.conftest import make_settings, question
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording_channel import RecordingChannel


def _db_file(hub: Hub) -> Path:
    return Path(hub.database.url.database or "")


async def _expect_storage_down(hub: Hub, fake: FakeOpenAI) -> None:
    channel = RecordingChannel()
    result = await hub.engine.handle(question("Are you there?"), channel)
    assert result.outcome is Outcome.STORAGE_FAILED
    assert [r.text for r in channel.shown] == [STORAGE_DOWN]
    assert fake.chat_requests() == []  # no answer that could not be recorded


async def test_read_only_database_connection(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    writable = await Hub.create(make_settings(tmp_path, fake_openai))
    path = _db_file(writable)
    await writable.close()
    hub = await Hub.create(make_settings(tmp_path, fake_openai,
                                         database_url=f"sqlite:///file:{path}?mode=ro&uri=true"),
                           apply_migrations=False)
    try:
        await _expect_storage_down(hub, fake_openai)
    finally:
        await hub.close()


async def test_locked_database(tmp_path: Path, fake_openai: FakeOpenAI,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.store import database

    monkeypatch.setattr(database, "SQLITE_BUSY_SECONDS", 1.0)  # held for good: give up soon
    hub = await Hub.create(make_settings(tmp_path, fake_openai))
    try:
        locker = sqlite3.connect(_db_file(hub), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            await _expect_storage_down(hub, fake_openai)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        # Once the lock is gone the same hub answers again.
        result = await hub.engine.handle(question("And now?"), RecordingChannel())
        assert result.outcome is Outcome.ANSWERED
    finally:
        await hub.close()


async def test_database_gone(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai,
                                         database_url="postgresql://nobody@127.0.0.1:9/none"),
                           apply_migrations=False)
    try:
        await _expect_storage_down(hub, fake_openai)
    finally:
        await hub.close()


async def test_sqlite_file_deleted_under_a_running_hub(tmp_path: Path,
                                                       fake_openai: FakeOpenAI) -> None:
    hub = await Hub.create(make_settings(tmp_path, fake_openai))
    try:
        await hub.database.dispose()
        _db_file(hub).unlink()
        await _expect_storage_down(hub, fake_openai)
    finally:
        await hub.close()
