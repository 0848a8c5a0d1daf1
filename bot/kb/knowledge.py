"""The knowledge base as the rest of bothub sees it: sync, retrieve for a channel, status."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.config import Behaviour, Settings, SourceConfig
from bot.kb.catalog import KbCatalog, RunRecord, RunReport
from bot.kb.documents import Hit
from bot.kb.embeddings import Embedder, embedder_from_settings
from bot.kb.index import ChunkIndex
from bot.kb.sources import build_sources
from bot.kb.sync import ProgressCallback, sync_sources
from bot.llm import ModelError
from bot.model import ConversationKey
from bot.telemetry import tracing

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Passages for one question, best first. Empty `passages` after a search is the signal
    that the knowledge base has nothing relevant (escalation acts on it)."""

    passages: tuple[Hit, ...]

    @property
    def found(self) -> bool:
        return bool(self.passages)


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    run_id: int
    status: str
    report: RunReport


@dataclass(frozen=True, slots=True)
class SourceStatus:
    config: SourceConfig
    documents: int
    chunks: int


class KnowledgeBase:
    def __init__(self, behaviour: Behaviour, sources: list[SourceConfig], catalog: KbCatalog,
                 index: ChunkIndex, embedder: Embedder | None) -> None:
        self.config = behaviour.knowledge
        self.sources = sources
        self.catalog = catalog
        self.index = index
        self.embedder = embedder

    @classmethod
    def from_settings(cls, settings: Settings, behaviour: Behaviour,
                      database: AsyncEngine) -> KnowledgeBase:
        embedder = embedder_from_settings(settings, batch=behaviour.knowledge.embed_batch)
        return cls(behaviour, behaviour.knowledge.resolved_sources(settings.kb_dir),
                   KbCatalog(database),
                   ChunkIndex(settings.resolved_lancedb_uri, embedder.name if embedder else None),
                   embedder)

    async def sync(self, *, source: str | None = None, trigger: str = "manual",
                   scheduled_for: datetime | None = None,
                   progress: ProgressCallback | None = None) -> SyncOutcome | None:
        """None when a scheduled fire time was already claimed by another worker. Raises
        `SyncInProgress` while another sync runs, `KeyError` for an unknown source."""
        configs = [s for s in self.sources if source is None or s.name == source]
        if not configs:
            raise KeyError(source)
        run_id = await self.catalog.start_run(trigger=trigger, source=source,
                                              scheduled_for=scheduled_for)
        if run_id is None:
            return None
        started = time.monotonic()
        status = "failed"
        with tracing.span("bothub.kb.sync", **{"bothub.trigger": trigger,
                                               "bothub.source": source, "bothub.run": run_id}):
            try:
                outcome = await self._sync_run(run_id, configs, source, progress)
                status = outcome.status
                tracing.annotate(**{"bothub.status": status})
                return outcome
            except asyncio.CancelledError:
                status = "interrupted"
                raise
            finally:
                attributes = {"status": status, "trigger": trigger}
                metrics.KB_SYNC_RUNS.add(1, attributes)
                metrics.KB_SYNC_DURATION.record(time.monotonic() - started, attributes)

    async def _sync_run(self, run_id: int, configs: list[SourceConfig], source: str | None,
                        progress: ProgressCallback | None) -> SyncOutcome:
        try:
            status, report = await sync_sources(
                build_sources(configs, self.catalog), config=self.config, catalog=self.catalog,
                index=self.index, embedder=self.embedder, run_id=run_id, progress=progress)
        except asyncio.CancelledError:  # shutdown: the next sync resumes where this one stopped
            log.info("kb.sync_interrupted", run_id=run_id)
            await asyncio.shield(self.catalog.finish_run(run_id, "interrupted", RunReport(), 0))
            raise
        except Exception as exc:
            log.exception("kb.sync_crashed", run_id=run_id)
            report = RunReport()
            report.problem(source or "*", "", f"sync crashed: {type(exc).__name__}",
                           failed=True)
            await self.catalog.finish_run(run_id, "failed", report, 0)
            raise
        if status != "failed" and source is None:
            dropped = await self.index.drop_other_tables()
            if dropped:
                log.info("kb.dropped_old_index", tables=dropped)
        return SyncOutcome(run_id, status, report)

    async def needs_sync(self) -> bool:
        """Never synced, or indexed with another embedding model than the one configured."""
        if not await self.catalog.runs(limit=1):
            return True
        return await self.catalog.embedded_with_other_model(
            self.embedder.name if self.embedder else "")

    def visible_sources(self, key: ConversationKey) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources
                     if s.visible_in(key.platform, key.workspace, key.channel))

    async def close(self) -> None:
        """Release the embedding model's connections (an HTTP client for OpenAI's)."""
        close = getattr(self.embedder, "close", None)
        if close is not None:
            await close()

    async def retrieve(self, question: str, key: ConversationKey) -> Retrieval:
        """The relevant passages this channel may see; a failing embedding service degrades
        to full-text search rather than failing the answer."""
        started = time.monotonic()
        sources = self.visible_sources(key)
        hits = await self.search(question, sources, limit=self.config.top_k * 2)
        relevant = [hit for hit in hits if self._relevant(hit)][: self.config.top_k]
        metrics.RETRIEVAL_LATENCY.record(time.monotonic() - started)
        metrics.RETRIEVAL_PASSAGES.record(len(relevant))
        if relevant:
            best = relevant[0]
            if best.similarity is not None:
                metrics.RETRIEVAL_TOP_SCORE.record(best.similarity, {"kind": "similarity"})
            if best.bm25 is not None:
                metrics.RETRIEVAL_TOP_SCORE.record(best.bm25, {"kind": "bm25"})
        return Retrieval(tuple(relevant))

    async def warm(self) -> None:
        """Read the index's files before the first question (see `ChunkIndex.warm`); a
        failure here only means the first question pays for it."""
        try:
            await self.index.warm(tuple(s.name for s in self.sources))
        except Exception as exc:
            log.warning("kb.warm_up_failed", error=str(exc)[:200])

    async def search(self, question: str, sources: tuple[str, ...] | None = None,
                     limit: int = 5) -> list[Hit]:
        names = sources if sources is not None else tuple(s.name for s in self.sources)
        vector = None
        if self.embedder is not None and question.strip():
            try:
                vector = (await self.embedder.embed([question]))[0]
            except ModelError as exc:
                log.warning("kb.query_embedding_failed", kind=exc.kind.value)
        return await self.index.search(question, vector, names, limit)

    def _relevant(self, hit: Hit) -> bool:
        if hit.bm25 is not None and hit.bm25 > 0:
            return True
        return hit.similarity is not None and hit.similarity >= self.config.min_similarity

    async def status(self) -> tuple[list[SourceStatus], list[RunRecord]]:
        counts = await self.catalog.document_counts()
        sources = [SourceStatus(config, *counts.get(config.name, (0, 0)))
                   for config in self.sources]
        return sources, await self.catalog.runs(limit=5)

    async def add_entry(self, title: str, body: str, *, url: str = "",
                        source: str = "escalations") -> int:
        """Knowledge from a resolved escalation; indexed on the next sync of that source."""
        return await self.catalog.add_entry(source, title, body, url)
