"""The chunk index on its own: URIs other than local folders, and safe query text."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from bot.kb import index as index_module
from bot.kb.documents import Chunk
from bot.kb.index import ChunkIndex, table_name


def chunk(doc_id: str, text: str, source: str = "docs") -> Chunk:
    return Chunk(source=source, doc_id=doc_id, index=0, title=doc_id.title(), url="",
                 section="", text=text)


async def test_a_uri_that_is_not_a_local_folder_works() -> None:
    index = ChunkIndex(f"memory://{uuid.uuid4().hex}", None)
    await index.replace_documents([("docs", "a")], [chunk("a", "refunds take 14 days")], None)
    await index.finish()
    assert [hit.chunk.doc_id for hit in await index.search("refunds", None, ["docs"], 3)] == ["a"]


async def test_quotes_and_query_syntax_in_text_are_searched_as_words(tmp_path: object) -> None:
    index = ChunkIndex(f"memory://{uuid.uuid4().hex}", None)
    await index.replace_documents([("it's", "o'brien")],
                                  [chunk("o'brien", "O'Brien's export failed", source="it's")],
                                  None)
    await index.finish()
    for query in ("O'Brien's export", 'export" OR 1=1 --', "export* AND NOT ~fail^2", "(export)"):
        hits = await index.search(query, None, ["it's"], 3)
        assert [hit.chunk.doc_id for hit in hits] == ["o'brien"], query
    assert await index.search("export", None, ["other"], 3) == []
    assert await index.search("   ", None, ["it's"], 3) == []


def test_each_embedding_model_gets_its_own_table() -> None:
    assert table_name(None) == "chunks_fts"
    assert table_name("openai:text-embedding-3-small") == "chunks_openai_text_embedding_3_small"
    assert table_name("local:all-MiniLM-L6-v2") != table_name("openai:text-embedding-3-small")


def test_local_embeddings_without_the_extra_is_a_clear_configuration_error(
        tmp_path: object) -> None:
    import importlib.util

    import pytest

    from bot.config import ConfigError
    from bot.kb.embeddings import embedder_from_settings
    from tests.conftest import make_settings

    if importlib.util.find_spec("sentence_transformers") is not None:
        pytest.skip("the local-embeddings extra is installed here")
    settings = make_settings(tmp_path, None, embedding_model="local")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"pip install 'bothub\[local-embeddings\]'"):
        embedder_from_settings(settings)


def test_a_heading_says_the_title_once() -> None:
    def heading(title: str, section: str) -> str:
        return Chunk("d", "x", 0, title, "", section, "t").heading

    assert heading("Billing", "Billing › Refunds") == "Billing › Refunds"
    assert heading("Billing", "Refunds") == "Billing › Refunds"
    assert heading("Billing", "") == "Billing"
    assert heading("", "Refunds › Card payments") == "Refunds › Card payments"


def _unit(rng: random.Random, dims: int) -> list[float]:
    values = [rng.gauss(0, 1) for _ in range(dims)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


async def _mixed_index(rows: int, dims: int) -> tuple[ChunkIndex, random.Random]:
    """A table with vectors and overlapping words across two sources."""
    rng = random.Random(3)
    words = ["refund", "invoice", "export", "password", "webhook", "quota", "trial", "seat"]
    chunks = [Chunk(source=f"s{n % 2}", doc_id=f"d{n}", index=0, title=f"Doc {n}", url="",
                    section="", text=" ".join(rng.choice(words) for _ in range(12)))
              for n in range(rows)]
    index = ChunkIndex(f"memory://{uuid.uuid4().hex}", "test:random")
    await index.replace_documents([], chunks, [_unit(rng, dims) for _ in chunks])
    await index.finish()
    return index, rng


async def test_hybrid_search_ranks_as_lancedbs_rrf_hybrid_query_does() -> None:
    """The two searches run separately and are fused here; what the user gets must be what
    LanceDB's own hybrid query with its RRF reranker gives: same passages, order, scores."""
    from lancedb.rerankers import RRFReranker

    index, rng = await _mixed_index(200, 8)
    table, _ = await index._readable()
    assert table is not None
    for text in ("refund invoice", "export webhook quota", "seat", "trial password refund"):
        vector = _unit(rng, 8)
        for sources in (["s0", "s1"], ["s1"]):
            ours = await index.search(text, vector, sources, 5)
            theirs = await (table.query().nearest_to(vector).distance_type("cosine")
                            .nearest_to_text(text, columns="content")
                            .where(f"source IN ({', '.join(repr(s) for s in sources)})")
                            .rerank(RRFReranker(return_score="all")).limit(5).to_list())
            assert [(h.chunk.doc_id, h.score, h.bm25) for h in ours] == [
                (r["doc_id"], pytest.approx(r["_relevance_score"]),
                 None if r["_score"] is None else pytest.approx(r["_score"])) for r in theirs]
            assert [h.similarity is None for h in ours] == [r["_distance"] is None
                                                            for r in theirs]
            assert all(h.chunk.source in sources for h in ours)


async def test_the_source_filter_applies_before_the_best_are_taken() -> None:
    """A channel that sees one source in two still gets a full page of its own passages,
    not what is left of the best passages overall."""
    index, rng = await _mixed_index(200, 8)
    for vector in (None, _unit(rng, 8)):
        hits = await index.search("refund invoice export", vector, ["s1"], 10)
        assert len(hits) == 10 and {h.chunk.source for h in hits} == {"s1"}


async def test_a_worker_sees_what_another_process_indexed_within_the_consistency_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "READ_CONSISTENCY", timedelta(seconds=0.2))
    uri = str(tmp_path / "lancedb")
    serving, syncing = ChunkIndex(uri, None), ChunkIndex(uri, None)  # two connections
    await syncing.replace_documents([("docs", "a")], [chunk("a", "refunds take 14 days")], None)
    await syncing.finish()
    assert [h.chunk.doc_id for h in await serving.search("refunds", None, ["docs"], 3)] == ["a"]

    await syncing.replace_documents([("docs", "b")], [chunk("b", "refunds of gift cards")],
                                    None)
    await syncing.finish()
    await asyncio.sleep(0.3)
    found = await serving.search("refunds", None, ["docs"], 3)
    assert sorted(h.chunk.doc_id for h in found) == ["a", "b"]


async def test_warming_up_reads_the_index_and_changes_nothing() -> None:
    empty = ChunkIndex(f"memory://{uuid.uuid4().hex}", "test:random")
    await empty.warm(["s0"])  # nothing indexed yet: nothing to read
    index, rng = await _mixed_index(50, 8)
    query = _unit(rng, 8)
    before = await index.search("refund invoice", query, ["s0", "s1"], 5)

    await index.warm(["s0", "s1"])

    assert await index.search("refund invoice", query, ["s0", "s1"], 5) == before
    assert await index.count() == 50
