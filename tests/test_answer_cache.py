"""The answer cache on Redis and in the database (SQLite and PostgreSQL): hits, misses when
anything in the key differs, expiry, a store that is down; and the knowledge base's version."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import answer_cache
from bot.answer_cache import (
    AnswerCache,
    AnswerKey,
    CachedAnswer,
    RedisAnswers,
    SqlAnswers,
    fingerprint,
    normalize_question,
)
from bot.config import AnswerCacheConfig
from bot.kb import catalog as catalog_module
from bot.kb.catalog import KbCatalog, RunReport
from bot.store import migrate
from bot.store.database import create_engine
from bot.store.tables import AnswerCacheEntry
from tests.test_ratelimit import DEAD_REDIS_URL, REDIS_URL, FakeClock, RecordingLog

KEY = AnswerKey(question="How do I export invoices?", platform="slack", workspace="T1",
                channel="C1", kb_version="r3.d10.c42.20260315T020000.000000",
                model="gpt-4o", policy=fingerprint("persona", 250))
ANSWER = CachedAnswer(text="Use the **Export** button.",
                      citations=[{"index": 1, "title": "Exporting data",
                                  "url": "https://docs.example.com/export", "snippet": "…"}],
                      model="gpt-4o-2024-08-06")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recorder = RecordingLog()
    monkeypatch.setattr(answer_cache, "log", recorder)
    return recorder


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of the test's own, its keys deleted afterwards."""
    prefix = f"test-answer-cache:{uuid.uuid4().hex}:"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


class Now:
    def __init__(self) -> None:
        self.value = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.value


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        "redis"])
async def cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnswerCache]:
    """The same behaviour on every store."""
    engine: AsyncEngine | None = None
    if request.param == "redis":
        store: answer_cache.CacheStore = RedisAnswers(
            REDIS_URL, prefix=request.getfixturevalue("redis_prefix"))
    else:
        url = (request.getfixturevalue("postgres_url") if request.param == "postgresql"
               else f"sqlite:///{tmp_path / 'bothub.db'}")
        engine = create_engine(url)
        await migrate.upgrade(engine)
        store = SqlAnswers(engine)
    made = AnswerCache(store, ttl_seconds=3600)
    yield made
    await made.close()
    if engine is not None:
        await engine.dispose()


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "expected"), [
    ("How do I export invoices?", "how do i export invoices"),
    ("  how do I   EXPORT\tinvoices ?!  ", "how do i export invoices"),
    ("Wie exportiere ich Rechnungen？", "wie exportiere ich rechnungen"),  # full-width ？
    ("STRASSE oder Straße…", "strasse oder strasse"),
    ("What is 2.5?", "what is 2.5"),
    ("?!", ""),
])
def test_questions_are_normalised(typed: str, expected: str) -> None:
    assert normalize_question(typed) == expected


def test_the_key_covers_scope_kb_version_model_and_policy() -> None:
    assert replace(KEY, question="how do i export invoices").digest == KEY.digest
    variants = [replace(KEY, question="How do I import invoices?"),
                replace(KEY, platform="discord"), replace(KEY, workspace="T2"),
                replace(KEY, channel="C2"), replace(KEY, kb_version="r4.d10.c42.x"),
                replace(KEY, model="gpt-4o-mini"), replace(KEY, policy=fingerprint("other")),
                # parts cannot run into each other
                replace(KEY, workspace="T1:C1", channel="")]
    digests = {variant.digest for variant in variants}
    assert len(digests) == len(variants) and KEY.digest not in digests
    assert len(KEY.digest) == 64


# --- both stores -----------------------------------------------------------------------------


async def test_a_hit_returns_the_answer_and_its_citations(cache: AnswerCache) -> None:
    assert await cache.get(KEY) is None
    await cache.put(KEY, ANSWER)
    assert await cache.get(KEY) == ANSWER
    assert await cache.get(replace(KEY, question="how do I export invoices")) == ANSWER
    assert (await cache.health())["state"] == "ok"


@pytest.mark.parametrize("change", [
    {"channel": "C2"}, {"workspace": "T9"}, {"platform": "teams"},
    {"kb_version": "r4.d11.c44.20260316T020000.000000"}, {"model": "gpt-4o-mini"},
    {"policy": "another persona"},
])
async def test_anything_else_different_is_a_miss(cache: AnswerCache,
                                                 change: dict[str, str]) -> None:
    await cache.put(KEY, ANSWER)
    assert await cache.get(replace(KEY, **change)) is None


async def test_a_second_put_replaces_the_first(cache: AnswerCache) -> None:
    await cache.put(KEY, ANSWER)
    newer = replace(ANSWER, text="Use Settings → Export.")
    await cache.put(KEY, newer)
    assert await cache.get(KEY) == newer


async def test_a_disabled_cache_stores_nothing(database: AsyncEngine) -> None:
    cache = AnswerCache.create(AnswerCacheConfig(enabled=False), database)
    await cache.put(KEY, ANSWER)
    assert not cache.enabled and await cache.get(KEY) is None
    async with database.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(AnswerCacheEntry)) == 0


# --- the database store ----------------------------------------------------------------------


async def test_database_entries_expire_and_are_pruned(database: AsyncEngine) -> None:
    now, clock = Now(), FakeClock()
    store = SqlAnswers(database, clock=clock, now=now)
    cache = AnswerCache(store, ttl_seconds=60)
    await cache.put(KEY, ANSWER)
    now.value += timedelta(seconds=59)
    assert await cache.get(KEY) == ANSWER
    now.value += timedelta(seconds=1)
    assert await cache.get(KEY) is None  # expired: ignored though still stored

    async def rows() -> int:
        async with database.connect() as connection:
            count = await connection.scalar(select(func.count()).select_from(AnswerCacheEntry))
        return int(count or 0)

    assert await rows() == 1
    clock.advance(answer_cache.PRUNE_SECONDS)  # the next put also clears out expired rows
    await cache.put(replace(KEY, channel="C2"), ANSWER)
    assert await rows() == 1
    assert await cache.get(replace(KEY, channel="C2")) == ANSWER


async def test_create_uses_the_database_without_redis(database: AsyncEngine) -> None:
    cache = AnswerCache.create(AnswerCacheConfig(), database)
    await cache.put(KEY, ANSWER)
    assert await cache.get(KEY) == ANSWER
    assert (await cache.health())["backend"] == "database"


# --- the Redis store -------------------------------------------------------------------------


async def test_redis_entries_expire_with_their_ttl(redis_prefix: str) -> None:
    cache = AnswerCache(RedisAnswers(REDIS_URL, prefix=redis_prefix), ttl_seconds=1)
    try:
        await cache.put(KEY, ANSWER)
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            ttl = await client.pttl(f"{redis_prefix}answer:{KEY.digest}")
        finally:
            await client.aclose()
        assert 0 < ttl <= 1000
        assert await cache.get(KEY) == ANSWER
        await asyncio.sleep(1.1)
        assert await cache.get(KEY) is None
    finally:
        await cache.close()


async def test_a_foreign_value_in_redis_is_a_miss(redis_prefix: str,
                                                  events: RecordingLog) -> None:
    cache = AnswerCache(RedisAnswers(REDIS_URL, prefix=redis_prefix), ttl_seconds=60)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.set(f"{redis_prefix}answer:{KEY.digest}", b"\xff not json")
        assert await cache.get(KEY) is None
        await client.set(f"{redis_prefix}answer:{KEY.digest}", '{"text": 1}')
        assert await cache.get(KEY) is None
        assert events.events == []  # a miss, not an outage
    finally:
        await client.aclose()
        await cache.close()



async def test_redis_down_means_no_cache_never_a_failure(events: RecordingLog) -> None:
    clock = FakeClock()
    cache = AnswerCache(RedisAnswers(DEAD_REDIS_URL), ttl_seconds=60, clock=clock)
    try:
        await cache.put(KEY, ANSWER)
        assert await cache.get(KEY) is None
        assert await cache.get(KEY) is None
        assert await cache.health() == {"backend": "redis", "state": "degraded",
                                        "error": "ConnectionError"}
        clock.advance(answer_cache.RETRY_SECONDS)  # tried again: still down, still no raise
        assert await cache.get(KEY) is None
    finally:
        await cache.close()
    assert len(events.named("answer_cache.unavailable")) == 1  # logged once


async def test_the_cache_recovers_when_its_store_is_back(events: RecordingLog,
                                                         redis_prefix: str) -> None:
    clock = FakeClock()
    store = RedisAnswers(REDIS_URL, prefix=redis_prefix)
    cache = AnswerCache(store, ttl_seconds=60, clock=clock)
    try:
        await cache.put(KEY, ANSWER)
        real_read = store.read

        async def broken(key: str) -> object:
            raise ConnectionError("Redis went away")

        store.read = broken  # type: ignore[method-assign]
        assert await cache.get(KEY) is None
        store.read = real_read  # type: ignore[method-assign]
        assert await cache.get(KEY) is None  # still waiting out the failure
        clock.advance(answer_cache.RETRY_SECONDS)
        assert await cache.get(KEY) == ANSWER
        assert await cache.health() == {"backend": "redis", "state": "ok"}
    finally:
        await cache.close()
    assert [name for _, name, _ in events.events] == ["answer_cache.unavailable",
                                                       "answer_cache.recovered"]


async def test_create_uses_redis_when_configured(redis_prefix: str,
                                                 tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    cache = AnswerCache.create(AnswerCacheConfig(ttl_seconds=5), engine, REDIS_URL)
    try:
        assert (await cache.health())["backend"] == "redis"
        await cache.put(KEY, ANSWER)
        assert await cache.get(KEY) == ANSWER  # no table needed: it is not the database
    finally:
        client = aioredis.Redis.from_url(REDIS_URL)
        await client.delete(f"bothub:answer:{KEY.digest}")
        await client.aclose()
        await cache.close()
        await engine.dispose()


# --- the knowledge base's version ------------------------------------------------------------


async def test_kb_version_changes_with_the_index_not_with_idle_syncs(
        database: AsyncEngine) -> None:
    catalog = KbCatalog(database)
    empty = await catalog.version()
    assert empty == "r0.d0.c0.-"

    document = {"doc_id": "export.md", "title": "Export", "url": "", "content_hash": "h1",
                "embedding_model": "", "chunk_count": 3}
    run = await catalog.start_run(trigger="manual", source=None)
    assert run is not None
    await catalog.record_documents("docs", [document])
    await catalog.finish_run(run, "ok", RunReport(added=1), 10)
    first = await catalog.version()
    assert first != empty and first.startswith(f"r{run}.d1.c3.")

    idle = await catalog.start_run(trigger="manual", source=None)
    assert idle is not None
    await catalog.finish_run(idle, "ok", RunReport(unchanged=1), 10)
    assert await catalog.version() == first  # nothing changed: cached answers stay valid

    await catalog.record_documents("docs", [{**document, "content_hash": "h2"}])
    edited = await catalog.version()
    assert edited != first
    await catalog.forget_documents("docs", ["export.md"])
    assert await catalog.version() not in {first, edited}


async def test_another_workers_sync_reaches_the_version_within_its_reuse_time(
        database: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "VERSION_REUSE_SECONDS", 0.3)
    this_worker, other_worker = KbCatalog(database), KbCatalog(database)
    before = await this_worker.version()
    await other_worker.record_documents("docs", [{
        "doc_id": "export.md", "title": "Export", "url": "", "content_hash": "h1",
        "embedding_model": "", "chunk_count": 3}])

    assert await this_worker.version() == before  # read once, reused: no query per question
    assert await other_worker.version() != before  # the writer sees its own change at once
    await asyncio.sleep(0.35)
    assert await this_worker.version() == await other_worker.version()
