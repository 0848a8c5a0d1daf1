"""The knowledge index check: LanceDB opened read-only in spirit, rows counted."""

from __future__ import annotations

from pathlib import Path

from bot.app import Hub
from bot.check import State
from tests.check.conftest import check_settings, findings_for, the
from tests.fakes.openai_server import FakeOpenAI


async def _sync(tmp_path: Path) -> None:
    hub = await Hub.create(check_settings(tmp_path))  # no key: a full-text index
    try:
        outcome = await hub.knowledge.sync()
        assert outcome is not None and outcome.status == "ok"
    finally:
        await hub.close()


async def test_nothing_indexed_asks_for_a_sync_and_creates_nothing(tmp_path: Path) -> None:
    settings = check_settings(tmp_path)
    found = the(await findings_for(settings), "knowledge base")
    assert found.state is State.WARNING
    assert found.detail.startswith("empty: nothing indexed yet")
    assert "run `bothub kb sync`" in found.fix
    assert not (tmp_path / "data" / "lancedb").exists()


async def test_a_synced_index_reports_its_passages(tmp_path: Path) -> None:
    await _sync(tmp_path)
    found = the(await findings_for(check_settings(tmp_path)), "knowledge base")
    assert found.state is State.OK
    count = int(found.detail.split()[0])
    assert count > 0
    assert "passages in chunks_fts" in found.detail and "(full text only)" in found.detail


async def test_an_index_of_another_embedding_model_is_a_warning(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    await _sync(tmp_path)  # full text only; now a key (and so embeddings) is configured
    found = the(await findings_for(check_settings(tmp_path, fake_openai)), "knowledge base")
    assert found.state is State.WARNING
    assert "indexed for another embedding model (chunks_fts)" in found.detail
    assert "chunks_openai_text_embedding_3_small" in found.detail


async def test_an_unusable_uri_fails_with_the_variable_to_fix(tmp_path: Path) -> None:
    found = the(await findings_for(check_settings(tmp_path, lancedb_uri="nosuch://bucket/x")),
                "knowledge base")
    assert found.state is State.FAILED
    assert found.detail.startswith("cannot open LanceDB at nosuch://bucket/x")
    assert "LANCEDB_URI" in found.fix
