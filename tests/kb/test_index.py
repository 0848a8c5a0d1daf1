"""The chunk index on its own: URIs other than local folders, and safe query text."""

from __future__ import annotations

import uuid

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
