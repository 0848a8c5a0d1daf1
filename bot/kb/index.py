"""The chunk table in LanceDB: vectors plus a native full-text index, searched together.

One table per embedding identity (`chunks_fts` without embeddings, `chunks_<model>` with them):
a new embedding model fills a new table while the old one keeps serving, and the old table is
dropped once the new one is complete, so vectors of two models never meet in one search.
"""

from __future__ import annotations

import asyncio
import re
from array import array
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from bot.kb.documents import Chunk, Hit

if TYPE_CHECKING:  # lancedb takes a second to import: only what searches or syncs loads it
    import lancedb
    import pyarrow as pa

log = structlog.get_logger(__name__)

TABLE_PREFIX = "chunks_"
# Below this a flat scan is exact and fast enough; at 1536 dimensions it costs ~1 ms per 1k rows
# on two cores, so past a few thousand rows an IVF-HNSW index keeps queries near 10 ms.
VECTOR_INDEX_MIN_ROWS = 2_000
# What a hit shows: the full `content` and the vector (6 kB at 1,536 dimensions) stay on disk.
HIT_COLUMNS = ["source", "doc_id", "chunk_index", "title", "url", "section", "text"]
RRF_K = 60  # reciprocal rank fusion's constant, LanceDB's RRFReranker default
# How stale an open table may be: LanceDB's default never looks for versions written by other
# processes, so a worker would search what it first opened until restarted while another
# worker or `bothub kb sync` kept the knowledge base current. Checked at most this often.
READ_CONSISTENCY = timedelta(seconds=5)


def table_name(embedder_name: str | None) -> str:
    if not embedder_name:
        return TABLE_PREFIX + "fts"
    return TABLE_PREFIX + re.sub(r"[^a-z0-9]+", "_", embedder_name.lower()).strip("_")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(_quote(v) for v in values)})"


def searchable_text(chunk: Chunk) -> str:
    """What is embedded and full-text indexed: the passage with its title and section, so
    that "refunds" finds a paragraph that only says "we return the money" under "Refunds"."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text


class ChunkIndex:
    def __init__(self, uri: str, embedder_name: str | None) -> None:
        self.uri = uri
        self.name = table_name(embedder_name)
        self.uses_vectors = embedder_name is not None
        self._db: lancedb.AsyncConnection | None = None
        self._table: lancedb.AsyncTable | None = None

    async def _connection(self) -> lancedb.AsyncConnection:
        if self._db is None:
            import lancedb

            self._db = await lancedb.connect_async(
                self.uri, read_consistency_interval=READ_CONSISTENCY)
        return self._db

    async def _open(self) -> lancedb.AsyncTable | None:
        if self._table is None:
            db = await self._connection()
            if self.name in (await db.list_tables()).tables:
                self._table = await db.open_table(self.name)
        return self._table

    async def _readable(self) -> tuple[lancedb.AsyncTable | None, bool]:
        """The table to search and whether its vectors match ours. Until a sync has filled
        this embedding model's table, another model's table still answers by text."""
        table = await self._open()
        if table is not None:
            return table, self.uses_vectors
        db = await self._connection()
        others = sorted(n for n in (await db.list_tables()).tables if n.startswith(TABLE_PREFIX))
        if not others:
            return None, False
        return await db.open_table(others[0]), False

    def _schema(self, dims: int | None) -> pa.Schema:
        import pyarrow as pa

        fields = [
            pa.field("key", pa.string()), pa.field("source", pa.string()),
            pa.field("doc_id", pa.string()), pa.field("chunk_index", pa.int32()),
            pa.field("title", pa.string()), pa.field("url", pa.string()),
            pa.field("section", pa.string()), pa.field("text", pa.string()),
            pa.field("content", pa.string()),
        ]
        if dims is not None:
            fields.append(pa.field("vector", pa.list_(pa.float32(), dims)))
        return pa.schema(fields)

    async def replace_documents(self, documents: Sequence[tuple[str, str]],
                                chunks: Sequence[Chunk],
                                vectors: Sequence[Sequence[float]] | None) -> None:
        """Swap the chunks of `documents` ((source, doc_id) pairs) for `chunks`, in one delete
        and one append: per-document writes would leave thousands of tiny table versions."""
        table = await self._open()
        if table is None:
            if not chunks:
                return
            dims = len(vectors[0]) if vectors else None
            db = await self._connection()
            table = await db.create_table(self.name, schema=self._schema(dims),
                                          exist_ok=True)
            self._table = table
        for source in {source for source, _ in documents}:
            doc_ids = [doc_id for s, doc_id in documents if s == source]
            await table.delete(f"source = {_quote(source)} AND {_in('doc_id', doc_ids)}")
        if chunks:
            await table.add(self._rows(chunks, vectors))

    def _rows(self, chunks: Sequence[Chunk],
              vectors: Sequence[Sequence[float]] | None) -> list[dict[str, Any]]:
        rows = []
        for position, chunk in enumerate(chunks):
            row: dict[str, Any] = {
                "key": chunk.key, "source": chunk.source, "doc_id": chunk.doc_id,
                "chunk_index": chunk.index, "title": chunk.title, "url": chunk.url,
                "section": chunk.section, "text": chunk.text, "content": searchable_text(chunk),
            }
            if self.uses_vectors:
                assert vectors is not None
                row["vector"] = list(vectors[position])
            rows.append(row)
        return rows

    async def delete_documents(self, source: str, doc_ids: Sequence[str]) -> None:
        table = await self._open()
        if table is not None and doc_ids:
            await table.delete(f"source = {_quote(source)} AND {_in('doc_id', doc_ids)}")

    async def finish(self) -> None:
        """After writes: build or refresh the full-text index and the source bitmap, compact,
        and index vectors once the table is large enough for a flat scan to be slow. Indexes
        missing from a table built by an earlier version are added here too."""
        from lancedb.index import FTS, Bitmap, IvfHnswSq

        table = await self._open()
        if table is None:
            return
        indices = {index.name for index in await table.list_indices()}
        if "content_idx" not in indices:
            await table.create_index("content", config=FTS())
        if "source_idx" not in indices:  # every search filters by source: a bitmap answers it
            await table.create_index("source", config=Bitmap())
        rows = await table.count_rows()
        if self.uses_vectors and "vector_idx" not in indices and rows >= VECTOR_INDEX_MIN_ROWS:
            await table.create_index("vector", config=IvfHnswSq(distance_type="cosine"))
        await table.optimize(cleanup_older_than=timedelta(hours=1))

    async def drop_other_tables(self) -> list[str]:
        """Tables of earlier embedding models, once this one is complete."""
        db = await self._connection()
        stale = [name for name in (await db.list_tables()).tables
                 if name.startswith(TABLE_PREFIX) and name != self.name]
        for name in stale:
            await db.drop_table(name)
        return stale

    async def warm(self, sources: Sequence[str]) -> None:
        """Load the indexes now, before a user's question needs them: the first search after
        a table is opened reads them (a second or more at 100k chunks), and the vector
        index's partitions are otherwise read one by one as queries first touch them."""
        table, vectors_match = await self._readable()
        if table is None:
            return
        for index in await table.list_indices():
            await table.prewarm_index(index.name)
        vector = None
        if vectors_match:
            dims = (await table.schema()).field("vector").type.list_size
            vector = [1.0] + [0.0] * (dims - 1)
        await self.search("warm up", vector, sources, 1)

    async def count(self) -> int:
        table = await self._open()
        return 0 if table is None else await table.count_rows()

    async def search(self, text: str, vector: Sequence[float] | None, sources: Sequence[str],
                     limit: int) -> list[Hit]:
        """Full-text (BM25) and, when the vectors match this table, vector search, fused by
        reciprocal rank (RRF, k=60) as LanceDB's hybrid query with `RRFReranker` does. The
        two searches run at once (LanceDB runs each in Rust without the GIL), fetch only the
        columns a hit shows, and filter by source before ranking (a prefilter, helped by the
        bitmap index on `source`)."""
        table, vectors_match = await self._readable()
        if table is None or not sources or not text.strip():
            return []
        where = _in("source", sources)
        words = (table.query().nearest_to_text(text, columns="content").where(where)
                 .select([*HIT_COLUMNS, "_score"]).limit(limit))
        if vector is None or not vectors_match:
            return [_hit(row) for row in (await words.to_arrow()).to_pylist()]
        nearest = (table.query().nearest_to(list(vector)).distance_type("cosine").where(where)
                   .select([*HIT_COLUMNS, "_distance"]).with_row_id().limit(limit))
        by_words, by_vector = await asyncio.gather(words.with_row_id().to_arrow(),
                                                   nearest.to_arrow())
        return fuse(by_vector.to_pylist(), by_words.to_pylist(), limit)


def fuse(by_vector: list[dict[str, Any]], by_words: list[dict[str, Any]],
         limit: int) -> list[Hit]:
    """Reciprocal rank fusion of the two result lists (each best first): a row scores the sum
    of 1 / (60 + rank) over the lists it is in. Ties keep vector hits first, then text hits
    in their order, and scores are compared as float32, which is what LanceDB's RRFReranker
    did, so the order is the one the hybrid query gave."""
    rows: dict[int, dict[str, Any]] = {}
    scores: dict[int, float] = {}
    for ranked in (by_vector, by_words):
        for rank, row in enumerate(ranked, 1):
            rowid = row["_rowid"]
            rows.setdefault(rowid, {}).update(row)
            scores[rowid] = scores.get(rowid, 0.0) + 1 / (rank + RRF_K)
    fused = {rowid: array("f", [score])[0] for rowid, score in scores.items()}
    order = sorted(rows, key=lambda rowid: -fused[rowid])
    return [_hit({**rows[rowid], "_relevance_score": fused[rowid]}) for rowid in order[:limit]]


def _hit(row: dict[str, Any]) -> Hit:
    distance = row.get("_distance")
    bm25 = row.get("_score")
    chunk = Chunk(source=row["source"], doc_id=row["doc_id"], index=int(row["chunk_index"]),
                  title=row["title"], url=row["url"], section=row["section"], text=row["text"])
    relevance = row.get("_relevance_score")
    return Hit(chunk=chunk,
               score=float(relevance if relevance is not None else bm25 or 0.0),
               similarity=None if distance is None else 1.0 - float(distance),
               bm25=None if bm25 is None else float(bm25))
