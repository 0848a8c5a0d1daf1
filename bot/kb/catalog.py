"""The SQL side of the knowledge base: what is indexed, each sync run, bothub's own entries.

The catalog is how a sync knows what changed without reading the index, and how a crashed sync
resumes: a document's row is written only after its chunks are in the index, so whatever was
not recorded is simply processed again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update

from bot.store.repository import Repository
from bot.store.tables import KbDocument, KbEntry, KbSyncRun

STALE_AFTER = timedelta(minutes=10)  # a running sync that has not beaten its heart this long died


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    doc_id: str
    content_hash: str
    embedding_model: str


@dataclass
class RunReport:
    """Counts of one sync; `errors` lists each skipped or failed document and why."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_embedded: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def problem(self, source: str, doc_id: str, reason: str, *, failed: bool) -> None:
        if failed:
            self.failed += 1
        else:
            self.skipped += 1
        if len(self.errors) < 500:
            self.errors.append({"source": source, "doc_id": doc_id[:300], "reason": reason[:300]})

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    trigger: str
    source: str | None
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    report: RunReport


class SyncInProgress(Exception):
    """Another sync is running against this database."""


# How long a worker reuses the version it read: another worker's (or the CLI's) sync reaches
# this worker's cache keys at most this late; its own syncs at once. Reading it is an aggregate
# over every document, too much to run for every question of a large knowledge base.
VERSION_REUSE_SECONDS = 5.0


class KbCatalog(Repository):
    _version: tuple[float, str] | None = None  # (time.monotonic() when read, the version)
    _writes = 0  # this catalog's writes so far: a read that overlapped one is not kept

    def _changed(self) -> None:
        self._writes += 1
        self._version = None

    async def indexed(self, source: str) -> dict[str, IndexedDocument]:
        async with self._session() as session:
            rows = await session.execute(
                select(KbDocument.doc_id, KbDocument.content_hash, KbDocument.embedding_model)
                .where(KbDocument.source == source))
            return {row.doc_id: IndexedDocument(row.doc_id, row.content_hash,
                                                row.embedding_model) for row in rows}

    async def record_documents(self, source: str,
                               documents: Sequence[dict[str, Any]]) -> None:
        """Upsert rows {doc_id, title, url, content_hash, embedding_model, chunk_count}."""
        if not documents:
            return
        async with self._session() as session:
            statement = self._insert(KbDocument).values(
                [{**document, "source": source, "updated_at": datetime.now(UTC)}
                 for document in documents])
            await session.execute(statement.on_conflict_do_update(
                index_elements=["source", "doc_id"],
                set_={name: statement.excluded[name] for name in
                      ("title", "url", "content_hash", "embedding_model", "chunk_count",
                       "updated_at")}))
        self._changed()

    async def forget_documents(self, source: str, doc_ids: Sequence[str]) -> None:
        async with self._session() as session:
            for start in range(0, len(doc_ids), 500):
                await session.execute(delete(KbDocument).where(
                    KbDocument.source == source,
                    KbDocument.doc_id.in_(doc_ids[start:start + 500])))
        self._changed()

    async def start_run(self, *, trigger: str, source: str | None,
                        scheduled_for: datetime | None = None) -> int | None:
        """Record a running sync and return its id.

        Raises `SyncInProgress` while another sync is alive. A scheduled run claims its fire
        time: None means another worker already claimed it (the unique constraint decides even
        when both check at the same instant)."""
        now = datetime.now(UTC)
        async with self._session() as session:
            await session.execute(
                update(KbSyncRun).where(KbSyncRun.status == "running",
                                        KbSyncRun.heartbeat_at < now - STALE_AFTER)
                .values(status="interrupted", finished_at=now))
            alive = (await session.execute(
                select(KbSyncRun.id).where(KbSyncRun.status == "running"))).first()
            if alive is not None:
                raise SyncInProgress(f"sync run {alive.id} is still running")
            result = await session.execute(
                self._insert(KbSyncRun)
                .values(trigger=trigger, source=source, scheduled_for=scheduled_for,
                        status="running", started_at=now, heartbeat_at=now, errors=[])
                .on_conflict_do_nothing(index_elements=["trigger", "scheduled_for"])
                .returning(KbSyncRun.id))
            return result.scalar_one_or_none()

    async def heartbeat(self, run_id: int, report: RunReport) -> None:
        async with self._session() as session:
            await session.execute(update(KbSyncRun).where(KbSyncRun.id == run_id).values(
                heartbeat_at=datetime.now(UTC), **_counts(report)))

    async def finish_run(self, run_id: int, status: str, report: RunReport,
                         duration_ms: int) -> None:
        now = datetime.now(UTC)
        async with self._session() as session:
            await session.execute(update(KbSyncRun).where(KbSyncRun.id == run_id).values(
                status=status, finished_at=now, heartbeat_at=now, duration_ms=duration_ms,
                errors=report.errors, **_counts(report)))
        self._changed()

    async def runs(self, limit: int = 20) -> list[RunRecord]:
        async with self._session() as session:
            rows = (await session.execute(
                select(KbSyncRun).order_by(KbSyncRun.id.desc()).limit(limit))).scalars().all()
        return [RunRecord(id=r.id, trigger=r.trigger, source=r.source, status=r.status,
                          started_at=_utc(r.started_at),
                          finished_at=_utc(r.finished_at) if r.finished_at else None,
                          duration_ms=r.duration_ms,
                          report=RunReport(added=r.added, updated=r.updated,
                                           unchanged=r.unchanged, deleted=r.deleted,
                                           skipped=r.skipped, failed=r.failed,
                                           chunks_embedded=r.chunks_embedded,
                                           errors=list(r.errors or [])))
                for r in rows]

    async def embedded_with_other_model(self, embedding_model: str) -> bool:
        async with self._session() as session:
            row = (await session.execute(select(KbDocument.id).where(
                KbDocument.embedding_model != embedding_model).limit(1))).first()
            return row is not None

    async def document_counts(self) -> dict[str, tuple[int, int]]:
        """source -> (documents, chunks)."""
        async with self._session() as session:
            rows = await session.execute(
                select(KbDocument.source, func.count(), func.coalesce(
                    func.sum(KbDocument.chunk_count), 0)).group_by(KbDocument.source))
            return {row[0]: (int(row[1]), int(row[2])) for row in rows}

    async def version(self) -> str:
        """A short string that changes whenever what retrieval can find changes, for keys of
        cached answers: the documents' count, chunks and latest change (a document row is
        written once its chunks are indexed, and deleted with them), and the last sync run
        that changed anything. A sync that found nothing new leaves it as it was, so cached
        answers outlive a nightly sync with no changes. One aggregate query, reused for
        VERSION_REUSE_SECONDS unless this catalog wrote in the meantime."""
        cached = self._version
        if cached is not None and time.monotonic() - cached[0] < VERSION_REUSE_SECONDS:
            return cached[1]
        read_at, writes = time.monotonic(), self._writes
        last_change = (select(func.max(KbSyncRun.id))
                       .where(KbSyncRun.added + KbSyncRun.updated + KbSyncRun.deleted > 0)
                       .scalar_subquery())
        async with self._session() as session:
            row = (await session.execute(select(
                func.count(KbDocument.id), func.coalesce(func.sum(KbDocument.chunk_count), 0),
                func.max(KbDocument.updated_at), last_change))).one()
        documents, chunks, changed_at, run = row
        stamp = _utc(changed_at).strftime("%Y%m%dT%H%M%S.%f") if changed_at else "-"
        version = f"r{run or 0}.d{documents}.c{chunks}.{stamp}"
        if self._writes == writes:
            self._version = (read_at, version)
        return version

    async def add_entry(self, source: str, title: str, body: str, url: str = "") -> int:
        async with self._session() as session:
            entry = KbEntry(source=source, title=title, body=body, url=url)
            session.add(entry)
            await session.flush()
            return entry.id

    async def entries(self, source: str) -> list[KbEntry]:
        async with self._session() as session:
            return list((await session.execute(
                select(KbEntry).where(KbEntry.source == source).order_by(KbEntry.id)))
                .scalars())


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything bothub writes is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _counts(report: RunReport) -> dict[str, int]:
    return {name: getattr(report, name) for name in
            ("added", "updated", "unchanged", "deleted", "skipped", "failed", "chunks_embedded")}
