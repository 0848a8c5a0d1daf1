"""One sync of the knowledge base: add what is new, re-embed what changed, delete what vanished.

Unchanged documents (same content hash, same embedding model) cost a hash and nothing else.
Changed ones are parsed, chunked, embedded and written in batches; a batch is recorded in SQL
only once it is in the index, so a crash mid-sync loses nothing and the next run resumes where
this one stopped. A document that cannot be parsed is skipped and reported; a source that
cannot be listed deletes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.config import KnowledgeConfig
from bot.kb.catalog import IndexedDocument, KbCatalog, RunReport
from bot.kb.chunking import chunk_document
from bot.kb.documents import (
    Chunk,
    Document,
    DocumentError,
    RawDocument,
    SkippedDocument,
    SourceUnavailable,
)
from bot.kb.embeddings import Embedder
from bot.kb.index import ChunkIndex, searchable_text
from bot.kb.parsing import parse
from bot.kb.sources import Source
from bot.llm import ModelError

log = structlog.get_logger(__name__)

FLUSH_CHUNKS = 512  # chunks embedded and written together
MAX_DOC_ID = 700  # the catalog's column; longer ids (huge URLs) are skipped


@dataclass(frozen=True, slots=True)
class Progress:
    """A sync event for progress displays: a source starts (`total` when it is known in
    advance) or one more document is done."""

    source: str
    done: int
    total: int | None
    doc_id: str = ""


ProgressCallback = Callable[[Progress], None]


class EmbeddingFailed(Exception):
    """The embedding service failed after its retries: the rest of this source would fail too."""


@dataclass
class _Batch:
    documents: list[tuple[Document, list[Chunk], bool]] = field(default_factory=list)

    @property
    def chunks(self) -> int:
        return sum(len(chunks) for _, chunks, _ in self.documents)


class SourceSync:
    def __init__(self, config: KnowledgeConfig, catalog: KbCatalog, index: ChunkIndex,
                 embedder: Embedder | None, report: RunReport,
                 progress: ProgressCallback | None = None,
                 heartbeat: Callable[[], Any] | None = None) -> None:
        self._config = config
        self._catalog = catalog
        self._index = index
        self._embedder = embedder
        self._embedding_name = embedder.name if embedder else ""
        self._report = report
        self._progress = progress or (lambda _event: None)
        self._heartbeat = heartbeat

    async def run(self, source: Source) -> None:
        """Raises `SourceUnavailable` (nothing deleted) or `EmbeddingFailed`."""
        indexed = await self._catalog.indexed(source.name)
        self._progress(Progress(source.name, 0, None))
        seen: set[str] = set()
        batch = _Batch()
        done = 0
        async for item in source.documents():
            done += 1
            seen.add(item.doc_id)
            if isinstance(item, SkippedDocument):
                self._report.problem(item.source, item.doc_id, item.reason, failed=False)
            else:
                prepared = self._prepare(item, indexed.get(item.doc_id))
                if prepared is not None:
                    batch.documents.append(prepared)
                    if batch.chunks >= FLUSH_CHUNKS:
                        await self._flush(source.name, batch)
                        batch = _Batch()
            self._progress(Progress(source.name, done, source.total, item.doc_id))
        await self._flush(source.name, batch)
        self._progress(Progress(source.name, done, done))  # complete, even for an empty source
        vanished = sorted(set(indexed) - seen)
        if vanished:
            await self._index.delete_documents(source.name, vanished)
            await self._catalog.forget_documents(source.name, vanished)
            self._report.deleted += len(vanished)
            log.info("kb.deleted", source=source.name, documents=len(vanished))

    def _prepare(self, raw: RawDocument,
                 known: IndexedDocument | None) -> tuple[Document, list[Chunk], bool] | None:
        if (known is not None and known.content_hash == raw.content_hash
                and known.embedding_model == self._embedding_name):
            self._report.unchanged += 1
            return None
        if len(raw.doc_id) > MAX_DOC_ID:
            self._report.problem(raw.source, raw.doc_id, "document id longer than 700 "
                                 "characters", failed=False)
            return None
        try:
            document = parse(raw)
            chunks = chunk_document(document, max_tokens=self._config.chunk_tokens,
                                    overlap_tokens=self._config.chunk_overlap)
        except DocumentError as exc:
            self._report.problem(raw.source, raw.doc_id, exc.reason, failed=False)
            return None
        except Exception as exc:  # a parser bug must not stop the sync of everything else
            log.exception("kb.parse_crashed", source=raw.source, doc_id=raw.doc_id)
            self._report.problem(raw.source, raw.doc_id, f"unexpected error: "
                                 f"{type(exc).__name__}", failed=True)
            return None
        if not chunks:
            self._report.problem(raw.source, raw.doc_id, "no text to index", failed=False)
            return None
        return document, chunks, known is None

    async def _flush(self, source: str, batch: _Batch) -> None:
        if not batch.documents:
            return
        chunks = [chunk for _, document_chunks, _ in batch.documents for chunk in document_chunks]
        vectors = None
        if self._embedder is not None:
            try:
                vectors = await self._embedder.embed([searchable_text(c) for c in chunks])
            except ModelError as exc:
                for document, _, _ in batch.documents:
                    self._report.problem(source, document.doc_id, f"embedding failed: "
                                         f"{exc.kind.value}", failed=True)
                raise EmbeddingFailed(exc.detail) from exc
            self._report.chunks_embedded += len(chunks)
        await self._index.replace_documents(
            [(source, document.doc_id) for document, _, _ in batch.documents], chunks, vectors)
        await self._catalog.record_documents(source, [
            {"doc_id": document.doc_id, "title": document.title[:500], "url": document.url,
             "content_hash": document.content_hash, "embedding_model": self._embedding_name,
             "chunk_count": len(document_chunks)}
            for document, document_chunks, _ in batch.documents])
        for _, _, is_new in batch.documents:
            if is_new:
                self._report.added += 1
            else:
                self._report.updated += 1
        if self._heartbeat is not None:
            await self._heartbeat()


async def sync_sources(sources: list[Source], *, config: KnowledgeConfig, catalog: KbCatalog,
                       index: ChunkIndex, embedder: Embedder | None, run_id: int,
                       progress: ProgressCallback | None = None) -> tuple[str, RunReport]:
    """Sync each source in turn; returns the run's status and report (already recorded)."""
    started = time.monotonic()
    report = RunReport()
    unavailable = 0
    crashed = False

    async def heartbeat() -> None:
        await catalog.heartbeat(run_id, report)

    syncer = SourceSync(config, catalog, index, embedder, report, progress, heartbeat)
    for source in sources:
        try:
            await syncer.run(source)
        except SourceUnavailable as exc:
            unavailable += 1
            report.problem(source.name, "", f"source unavailable: {exc}", failed=True)
            log.warning("kb.source_unavailable", source=source.name, reason=str(exc))
        except EmbeddingFailed as exc:
            crashed = True
            log.error("kb.embedding_failed", source=source.name, reason=str(exc))
            break
    if report.changed:
        await index.finish()
    if crashed or (sources and unavailable == len(sources)):
        status = "failed"
    elif report.failed or report.skipped or unavailable:
        status = "partial"
    else:
        status = "ok"
    duration_ms = int((time.monotonic() - started) * 1000)
    await catalog.finish_run(run_id, status, report, duration_ms)
    log.info("kb.synced", status=status, added=report.added, updated=report.updated,
             unchanged=report.unchanged, deleted=report.deleted, skipped=report.skipped,
             failed=report.failed, duration_ms=duration_ms)
    return status, report
