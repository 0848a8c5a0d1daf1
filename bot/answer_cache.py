"""The answer cache: a repeated question, asked again in the same place while nothing that
shaped its answer has changed, is answered from the cache instead of the model.

What "nothing changed" means is the key (`AnswerKey`): the question as people type it
(case, spacing and trailing punctuation ignored), the scope it was asked in (platform,
workspace, channel: channels see different sources and policies), the knowledge base's
version (`KbCatalog.version`), the model, and a fingerprint of the policy the caller answers
under (persona, answer limits, anything else that changes the text; see `fingerprint`).

Only first-turn questions are cached: a follow-up's answer depends on the conversation
before it, which the key does not hold. The caller decides what to cache; it should also
skip questions with attachments and answers that were not a plain model answer (escalated,
withheld by a guardrail, failed).

With REDIS_URL the cache is shared in Redis (entries expire with SET … EX); without it, it
lives in the database (`answer_cache`), where expired rows are ignored and deleted every
`PRUNE_SECONDS`. A cache must never cost an answer: when its store fails, the cache is
skipped (logged once), and tried again after `RETRY_SECONDS`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.config import AnswerCacheConfig
from bot.store.repository import Repository
from bot.store.tables import AnswerCacheEntry

log = structlog.get_logger(__name__)

KEY_FORMAT = "answer-cache/1"  # part of every digest: changing what is stored changes it
RETRY_SECONDS = 30.0  # after a failure, skip the cache this long before trying its store again
PRUNE_SECONDS = 600.0  # how often a worker deletes expired rows from the SQL cache
REDIS_TIMEOUT_SECONDS = 0.5  # a cache lookup sits before every first answer: fail fast
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What is replayed on a hit: the text, its citations (as JSON-able dicts) and the model
    that wrote it (for the record; the hit itself costs nothing)."""

    text: str
    citations: list[dict[str, Any]]
    model: str

    @classmethod
    def from_json(cls, value: Any) -> CachedAnswer | None:
        """None for anything that is not a stored answer (an older format, a foreign value)."""
        if not isinstance(value, dict):
            return None
        text, citations, model = value.get("text"), value.get("citations"), value.get("model")
        if not (isinstance(text, str) and isinstance(model, str) and isinstance(citations, list)
                and all(isinstance(c, dict) for c in citations)):
            return None
        return cls(text=text, citations=citations, model=model)


def normalize_question(text: str) -> str:
    """The question as a key: Unicode-normalized (NFKC: full-width and composed forms alike),
    case-folded, whitespace collapsed, trailing punctuation dropped ("How do I export?" and
    "how do i  export" are one question)."""
    folded = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    end = len(folded)
    while end and (folded[end - 1].isspace() or unicodedata.category(folded[end - 1])[0] == "P"):
        end -= 1
    return folded[:end]


def fingerprint(*parts: Any) -> str:
    """A short stable digest of whatever policy shapes an answer (the rendered system prompt,
    the answer limits, the passages' settings), for `AnswerKey.policy`. Parts must be
    JSON-serialisable; pydantic models can be passed as `model.model_dump(mode="json")`."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AnswerKey:
    question: str
    platform: str
    workspace: str
    channel: str
    kb_version: str
    model: str
    policy: str = ""

    @property
    def digest(self) -> str:
        """sha256 of every part, JSON-encoded so that no two different keys can run together
        (as "a:b" + "c" and "a" + "b:c" would when joined)."""
        parts = [KEY_FORMAT, normalize_question(self.question), self.platform, self.workspace,
                 self.channel, self.kb_version, self.model, self.policy]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class CacheStore(Protocol):
    name: str

    async def read(self, key: str) -> Any: ...
    async def write(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None: ...
    async def close(self) -> None: ...


class RedisAnswers:
    """Entries in Redis, shared by every worker; Redis expires them."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "bothub:") -> None:
        self._prefix = f"{prefix}answer:"
        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 1),
            client_name="bothub-answer-cache")

    async def read(self, key: str) -> Any:
        raw = await cast(Awaitable[bytes | None], self._client.get(self._prefix + key))
        try:
            return None if raw is None else json.loads(raw)
        except ValueError:
            return None  # not ours, or torn: a miss, and the next put replaces it

    async def write(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None:
        await cast(Awaitable[Any], self._client.set(self._prefix + key, json.dumps(value),
                                                     ex=ttl_seconds))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()


class SqlAnswers(Repository):
    """Entries in the `answer_cache` table, for deployments without Redis."""

    name = "database"

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(engine)
        self._clock = clock
        self._now = now
        self._prune_at = clock() + PRUNE_SECONDS

    async def read(self, key: str) -> Any:
        async with self._session() as session:
            return await session.scalar(
                select(AnswerCacheEntry.value).where(AnswerCacheEntry.key == key,
                                                     AnswerCacheEntry.expires_at > self._now()))

    async def write(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None:
        now = self._now()
        async with self._session() as session:
            statement = self._insert(AnswerCacheEntry).values(
                key=key, value=value, expires_at=now + timedelta(seconds=ttl_seconds),
                created_at=now)
            await session.execute(statement.on_conflict_do_update(
                index_elements=["key"], set_={name: statement.excluded[name] for name in
                                              ("value", "expires_at", "created_at")}))
        if self._clock() >= self._prune_at:
            self._prune_at = self._clock() + PRUNE_SECONDS
            await self.prune()

    async def prune(self) -> int:
        """Delete expired entries (indexed by expiry); returns how many."""
        async with self._session() as session:
            result = await session.execute(
                delete(AnswerCacheEntry).where(AnswerCacheEntry.expires_at <= self._now()))
            return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        return None  # the engine belongs to the hub


class AnswerCache:
    """`get` before answering a first-turn question, `put` after answering it (see the module
    doc for what to cache). Neither ever raises for its store."""

    def __init__(self, store: CacheStore | None, *, ttl_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._clock = clock
        self._error: str | None = None  # the last failure's type while the cache is skipped
        self._retry_at = 0.0

    @classmethod
    def create(cls, config: AnswerCacheConfig, database: AsyncEngine,
               redis_url: str | None = None) -> AnswerCache:
        """Redis when a URL is given, else the database; a disabled cache stores nothing."""
        store: CacheStore | None = None
        if config.enabled:
            store = RedisAnswers(redis_url) if redis_url else SqlAnswers(database)
        return cls(store, ttl_seconds=config.ttl_seconds)

    @property
    def enabled(self) -> bool:
        return self._store is not None

    async def get(self, key: AnswerKey) -> CachedAnswer | None:
        if self._store is None or not self._due():
            return None
        try:
            value = await self._store.read(key.digest)
        except Exception as exc:
            self._failed(exc)
            metrics.ANSWER_CACHE.add(1, {"result": "error"})
            return None
        self._recovered()
        answer = CachedAnswer.from_json(value) if value is not None else None
        metrics.ANSWER_CACHE.add(1, {"result": "hit" if answer else "miss"})
        return answer

    async def put(self, key: AnswerKey, answer: CachedAnswer) -> None:
        if self._store is None or not self._due():
            return
        try:
            await self._store.write(key.digest, asdict(answer), self._ttl)
        except Exception as exc:
            self._failed(exc)
        else:
            self._recovered()

    async def health(self) -> dict[str, object]:
        """For /healthz: the store in use and whether the cache is being skipped."""
        if self._store is None:
            return {"backend": "off", "state": "ok"}
        if self._error is not None:
            return {"backend": self._store.name, "state": "degraded", "error": self._error}
        return {"backend": self._store.name, "state": "ok"}

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()

    def _due(self) -> bool:
        """While failing, one call per RETRY_SECONDS tries the store; the rest skip it, so an
        outage does not add a timeout to every answer."""
        if self._error is None:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + RETRY_SECONDS
        return True

    def _failed(self, exc: Exception) -> None:
        if self._error is None:
            log.warning("answer_cache.unavailable", backend=getattr(self._store, "name", ""),
                        error=type(exc).__name__, detail=str(exc)[:200],
                        effect="answers are not cached", retry_in_seconds=RETRY_SECONDS)
        self._error = type(exc).__name__
        self._retry_at = self._clock() + RETRY_SECONDS

    def _recovered(self) -> None:
        if self._error is not None:
            log.info("answer_cache.recovered", after=self._error)
            self._error = None
